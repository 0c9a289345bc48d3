"""``python -m inception_deploy.benchmarks.device_verify``: verify the engine a deploy bundle built, on the device.

Runs the engine (through the same runner interface the host bench uses: ``runtime.backends``) on the
images the bundle carries (``eval/``) and compares it with the FP32 logits the host computed on
exactly those files, then writes the report the host bench writes (``report.json`` + manifest,
``report.md``): top-1/top-5, drop and agreement against the host FP32, mean KL, latency percentiles,
GPU time beside end-to-end time, and the environment (Jetson power mode and clocks where readable).
``inception-deploy gate`` takes that report on the host.

``--engine`` points at any artifact the runners take: on the device the built ``model.engine``
(TensorRT); in the project's tests an ONNX file run by ONNX Runtime stands in through the same
interface. Device side: numpy + Pillow (+ TensorRT), Python 3.8.
"""
import argparse
import os
import sys
from typing import Any, Dict, List, Optional

from inception_deploy.benchmarks.bench import BenchSettings, RecordedReference, Selection, run_bench
from inception_deploy.benchmarks.latency import TimingPolicy, WarmupPolicy
from inception_deploy.benchmarks.runners.factory import candidate_for
from inception_deploy.engines.builder import ENGINE_NAME, engine_dir
from inception_deploy.engines.eval_files import EVAL_DIR, IMAGES, load_eval_set
from inception_deploy.engines.targets import resolve_target
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.command import run
from inception_deploy.pipeline.errors import CheckFailed, UserError

BUNDLE_MANIFEST = "SHA256SUMS"
COMMAND = "verify-on-device"


def recorded_reference(bundle: str) -> RecordedReference:
    """The host's FP32 logits for the bundle's images, as the report's reference row."""
    record = load_eval_set(bundle)
    ref = record["reference"]
    logits = {path: row for path, row in zip(ref["order"], record["logits"])}
    return RecordedReference(id="fp32/onnxruntime:host", precision="fp32", backend="onnxruntime", logits=logits,
                             artifact={"file": ref["onnx"], "sha256": ref["onnx_sha256"], "kind": "onnx",
                                       "logits": ref["file"]},
                             details={"name": ref["runner"], "where": "on the host that wrote the bundle",
                                      "preprocessing": ref["preprocessing"]})


def default_engine(bundle: str, target_name: str, precision: str, dla_core: int) -> str:
    """Where ``build_on_device.sh`` put the engine (the builder's layout under ``out/engines``)."""
    bundle_manifest = mf.read(os.path.join(bundle, BUNDLE_MANIFEST), expect_kind="bundle")
    target = resolve_target(target_name)
    folder = engine_dir(os.path.join(bundle, "out", "engines"), target, bundle_manifest.model.name, precision, dla_core)
    return os.path.join(folder, ENGINE_NAME)


def settings_from(args: argparse.Namespace) -> BenchSettings:
    return BenchSettings(batch_sizes=args.batch_sizes,
                         warmup=WarmupPolicy(iterations=args.warmup_iterations, seconds=args.warmup_seconds),
                         timing=TimingPolicy(iterations=args.iterations, max_seconds=args.max_seconds,
                                             min_iterations=min(5, args.iterations)),
                         accuracy_batch=args.accuracy_batch, device="auto", cuda_graph=args.cuda_graph)


def verify(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the verification and write the reports; returns the report."""
    from inception_deploy.benchmarks.report import markdown, write_reports

    engine = args.engine or default_engine(args.bundle, args.target, args.precision, args.dla_core)
    if not os.path.isfile(engine):
        raise UserError("engine not found: %s; build it first (./build_on_device.sh %s)" % (engine, args.precision))
    candidate = candidate_for(engine)
    images = os.path.join(args.bundle, EVAL_DIR, IMAGES)
    report = run_bench([candidate], Selection(root=images, count=None), settings_from(args),
                       recorded=recorded_reference(args.bundle), skip_unsupported=False, command=COMMAND)
    report["device_verify"] = {"bundle": os.path.abspath(args.bundle), "target": args.target,
                               "precision": args.precision, "dla_core": args.dla_core, "engine": engine}
    write_reports(report, args.out, candidate.manifest, engine)
    print(markdown(report))
    print("wrote %s (gate it on the host: inception-deploy gate --report report.json --baseline ...)"
          % os.path.join(args.out, "report.json"))
    return report


def _sizes(text: str) -> List[int]:
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("expected batch sizes like 1,4, got %r" % text)
    return sizes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inception_deploy.benchmarks.device_verify", description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", required=True, help="the deploy bundle folder (holds eval/ and SHA256SUMS)")
    p.add_argument("--target", required=True, help="the bundle's target")
    p.add_argument("--precision", required=True, choices=("int8", "fp16", "fp32"))
    p.add_argument("--dla-core", type=int, default=-1, help="the DLA core the engine was built for (-1: GPU)")
    p.add_argument("--engine", help="the artifact to verify (default: the engine build_on_device.sh wrote)")
    p.add_argument("--out", required=True, help="folder for report.json, report.md")
    p.add_argument("--batch-sizes", type=_sizes, default=_sizes("1,4"), help="latency batch sizes (default 1,4)")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--max-seconds", type=float, default=20.0)
    p.add_argument("--warmup-iterations", type=int, default=5)
    p.add_argument("--warmup-seconds", type=float, default=1.0)
    p.add_argument("--accuracy-batch", type=int, default=4)
    p.add_argument("--cuda-graph", action="store_true")
    p.add_argument("--min-top1-agreement", type=float, default=0.90,
                   help="exit 1 below this top-1 agreement with the host FP32 (default 0.90)")
    p.set_defaults(func=check)
    return p


def check(args: argparse.Namespace) -> int:
    """Verify, then hold the engine's top-1 agreement with the host FP32 to ``--min-top1-agreement``."""
    report = verify(args)
    row = next(r for r in report["rows"] if not r.get("reference"))
    agreement = row["drift"]["top1_agreement"]
    if agreement < args.min_top1_agreement:
        raise CheckFailed("%s agrees with the host FP32 on %.2f %% of top-1 predictions, limit %.1f %%"
                          % (row["id"], 100 * agreement, 100 * args.min_top1_agreement))
    print("verified: %s top-1 agreement %.2f %% with the host FP32 (limit %.1f %%)"
          % (row["id"], 100 * agreement, 100 * args.min_top1_agreement))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Under the one runner of :mod:`pipeline.command` (same error lines and exit codes as the CLI)."""
    return run(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
