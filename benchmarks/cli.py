"""CLI for the benchmarks stage: ``bench``, ``verify``, ``baseline``, ``gate``.

Heavy imports (numpy runners, torch, matplotlib) happen inside the command functions, so
``inception-deploy --help`` stays fast and ``verify`` on a device host never imports torch.
"""
import argparse
import os
import sys
from typing import Any, Dict, List, Optional

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.errors import CheckFailed, UserError

BENCH_EXITS = ("Exit codes: 0 reports written; 2 unusable input (no artifacts, missing or mismatched manifests, "
               "no labeled images); 3 nothing can run on this host.")
VERIFY_EXITS = ("Exit codes: 0 verified (top-1 agreement with the reference at or above the limit); 1 agreement "
                "below the limit; 2 unusable input; 3 the artifact cannot run here (e.g. a TensorRT engine on a "
                "host without TensorRT or a GPU: the reason is printed).")
BASELINE_EXITS = "Exit codes: 0 baseline written; 2 unusable report."
GATE_EXITS = ("Exit codes: 0 every check holds; 1 a regression (the screen and the JUnit XML say which number "
              "broke which limit); 2 unusable input (missing files, or a report of another model, image set or "
              "preprocessing than the baseline's).")


def _batch_sizes(text: str) -> List[int]:
    try:
        sizes = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated batch sizes like 1,8,32, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return sizes


def _add_measure_args(p: argparse.ArgumentParser, default_count: int, default_sizes: str) -> None:
    p.add_argument("--images", default=paths.VAL_DIR,
                   help="labeled image folder (default: the shared Tiny-ImageNet val split; never the calib split)")
    p.add_argument("--count", type=int, default=default_count,
                   help=f"class-balanced, seeded subset of the images (default {default_count})")
    p.add_argument("--all", action="store_true", help="every image in the folder (5,000 for the shared val split)")
    p.add_argument("--seed", type=int, default=0, help="subset seed (default 0)")
    p.add_argument("--out", required=True, help="folder for report.json, report.md, report.html and the plots")
    p.add_argument("--batch-sizes", type=_batch_sizes, default=_batch_sizes(default_sizes),
                   help=f"latency batch sizes (default {default_sizes})")
    p.add_argument("--iterations", type=int, default=50, help="timed iterations per batch size (default 50)")
    p.add_argument("--max-seconds", type=float, default=20.0,
                   help="stop timing a batch size after this many seconds (at least 5 iterations; default 20)")
    p.add_argument("--warmup-iterations", type=int, default=5, help="warm-up calls before timing (default 5)")
    p.add_argument("--warmup-seconds", type=float, default=1.0, help="and at least this long (default 1 s)")
    p.add_argument("--accuracy-batch", type=int, default=32, help="batch size of the accuracy pass (default 32)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="PyTorch device and ONNX Runtime provider (default cpu; auto: CUDA when present)")
    p.add_argument("--threads", type=int, default=0,
                   help="intra-op threads for PyTorch/ONNX Runtime (0: library default; 1 on a busy shared host)")
    p.add_argument("--cuda-graph", action="store_true", help="replay CUDA graphs (PyTorch CUDA / TensorRT runners)")
    p.add_argument("--with-preprocessing", action="store_true",
                   help="also time decode + preprocessing + inference per batch, and preprocessing alone per image")
    p.add_argument("--no-latency", action="store_true", help="accuracy and drift only")


def _settings(args: argparse.Namespace) -> Any:
    from inception_deploy.benchmarks.bench import BenchSettings
    from inception_deploy.benchmarks.latency import TimingPolicy, WarmupPolicy

    if args.iterations < 1 or args.accuracy_batch < 1:
        raise UserError("--iterations and --accuracy-batch must be at least 1")
    return BenchSettings(batch_sizes=args.batch_sizes,
                         warmup=WarmupPolicy(iterations=args.warmup_iterations, seconds=args.warmup_seconds),
                         timing=TimingPolicy(iterations=args.iterations, max_seconds=args.max_seconds,
                                             min_iterations=min(5, args.iterations)),
                         accuracy_batch=args.accuracy_batch, device=args.device, threads=args.threads,
                         cuda_graph=args.cuda_graph, latency=not args.no_latency,
                         with_preprocessing=args.with_preprocessing)


def _selection(args: argparse.Namespace) -> Any:
    from inception_deploy.benchmarks.bench import Selection

    return Selection(root=args.images, count=None if args.all else args.count, seed=args.seed)


def _print_written(written: Dict[str, str], report: Dict[str, Any]) -> None:
    from inception_deploy.benchmarks.report import markdown

    print(markdown(report))
    print("wrote " + ", ".join(os.path.relpath(p) for p in written.values()))


# -- bench ------------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from inception_deploy.benchmarks.bench import Missing, run_bench
    from inception_deploy.benchmarks.report import write_reports
    from inception_deploy.benchmarks.runners.factory import candidate_for, disambiguate, discover, pytorch_candidate

    candidates = [candidate_for(p) for p in args.artifacts]
    missing: List[Missing] = []
    if args.from_dir:
        found = discover(args.from_dir)
        known = {os.path.abspath(c.path) for c in candidates}
        candidates += [c for c in found if os.path.abspath(c.path) not in known]
        kinds = {c.manifest.kind for c in candidates if c.manifest}
        hints = {"onnx": "make export (inception-deploy export) writes model.onnx",
                 "onnx-fp16": "make calibrate (inception-deploy calibrate --precision fp16) writes model.fp16.onnx",
                 "onnx-int8": "make calibrate (inception-deploy calibrate --precision int8) writes model.int8.onnx"}
        for kind, hint in hints.items():
            if kind not in kinds:
                missing.append(Missing(kind, f"no {kind} artifact under {args.from_dir}; {hint}"))
                print(f"missing {kind}: benchmarking what exists ({hint})")
    if not candidates:
        raise UserError("no artifacts to benchmark: pass ONNX files / engines, or --from a run folder "
                        "(e.g. build/demo) that holds them")
    candidates = disambiguate(candidates)
    first = next(c for c in candidates if c.manifest is not None)
    reference = None
    if not args.no_pytorch:
        source = args.model or first.manifest.model.source
        if not args.model and source.startswith("local-dir:") and not os.path.isdir(source[len("local-dir:"):]):
            raise UserError(f"the PyTorch source recorded in {first.path}'s manifest ({source}) is not here; pass "
                            "--model SOURCE (the model it was exported from) or --no-pytorch")
        reference = pytorch_candidate(source, first.manifest)
    report = run_bench(candidates, _selection(args), _settings(args), reference=reference, missing=missing)
    written = write_reports(report, args.out, first.manifest, first.path)
    _print_written(written, report)
    return 0


# -- verify -----------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    from inception_deploy.benchmarks.bench import run_bench
    from inception_deploy.benchmarks.report import write_reports
    from inception_deploy.benchmarks.runners.factory import candidate_for, open_runner

    target = candidate_for(args.engine)
    ref_path = args.reference or (mf.parent_path(target.manifest, args.engine) if target.manifest else None)
    if target.backend == "tensorrt":
        # fail fast, before any measuring, if the engine cannot run on this host
        probe = open_runner(target, device=args.device, cuda_graph=args.cuda_graph)
        with probe:
            pass
    reference = None
    if ref_path:
        reference = candidate_for(ref_path)
        if not reference.manifest or not reference.manifest.kind.startswith("onnx"):
            raise UserError(f"reference {ref_path} is not an ONNX artifact; pass --reference model.onnx")
        if reference.id == target.id:
            reference.label = "reference"
    else:
        print(f"note: no reference ONNX found for {args.engine}; reporting accuracy only (pass --reference)")
    report = run_bench([target], _selection(args), _settings(args), reference=reference, skip_unsupported=False,
                       command="verify")
    written = write_reports(report, args.out, target.manifest, args.engine)
    _print_written(written, report)
    row = next(r for r in report["rows"] if not r.get("reference")) if reference else None
    if row and row["drift"]["top1_agreement"] < args.min_top1_agreement:
        raise CheckFailed(f"{row['id']} agrees with its reference {report['reference']} on "
                          f"{100 * row['drift']['top1_agreement']:.2f} % of top-1 predictions, limit "
                          f"{100 * args.min_top1_agreement:.1f} % (max |logit| error "
                          f"{row['drift']['max_abs_logit_error']:.3g}); see {written['md']}")
    if row:
        print(f"verified: {row['id']} top-1 agreement {100 * row['drift']['top1_agreement']:.2f} % with "
              f"{report['reference']} (limit {100 * args.min_top1_agreement:.1f} %)")
    return 0


# -- baseline / gate --------------------------------------------------------------------------------
def _limit_overrides(args: argparse.Namespace) -> Dict[str, Optional[float]]:
    return {"max_top1_drop": args.max_top1_drop, "max_top5_drop": args.max_top5_drop,
            "max_latency_regression": args.max_latency_regression}


def _add_limit_args(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument("--max-top1-drop", type=float, help=f"top-1 drop limit in points ({where})")
    p.add_argument("--max-top5-drop", type=float, help=f"top-5 drop limit in points ({where})")
    p.add_argument("--max-latency-regression", type=float,
                   help=f"p50 latency increase limit in percent ({where}; off unless set: shared CI machines "
                        "are noisy)")


def cmd_baseline(args: argparse.Namespace) -> int:
    from inception_deploy.benchmarks.gate import DEFAULT_LIMITS, write_baseline
    from inception_deploy.benchmarks.report import load_report

    out = args.out
    if not out:
        name = load_report(args.report)["identity"]["model"].get("name")
        paths.path_component(name, "model name", args.report)
        out = os.path.join(paths.REPO_ROOT, "benchmarks", "baselines", f"{name}.json")
    limits = dict(DEFAULT_LIMITS)
    limits.update({k: v for k, v in _limit_overrides(args).items() if v is not None})
    base = write_baseline(args.report, out, limits)
    print(f"baseline: {os.path.relpath(out)} from {args.report}: {len(base['rows'])} runners "
          f"({', '.join(base['rows'])}), limits {limits}; commit it to make it the gate's reference")
    return 0


def cmd_gate(args: argparse.Namespace) -> int:
    from inception_deploy.benchmarks import gate
    from inception_deploy.benchmarks.report import load_report

    junit = args.junit
    try:
        report = load_report(args.report)
        baseline = gate.load_baseline(args.baseline)
        result = gate.evaluate(report, baseline, args.report, args.baseline, _limit_overrides(args))
    except Exception as e:   # CI keeps a test report exactly when the gate cannot run
        if junit:
            gate.write_junit(junit, None, str(e) if isinstance(e, UserError) else
                             f"internal error: {type(e).__name__}: {e}")
        raise
    print(gate.screen(result))
    if junit:
        gate.write_junit(junit, result)
        print(f"JUnit XML: {junit}")
    sys.stdout.flush()
    return 0 if result.passed else 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench", help="latency + accuracy + drift of every artifact against the PyTorch FP32 reference",
        description="Benchmark artifacts (ONNX FP32/FP16/INT8 through ONNX Runtime, TensorRT engines) and the "
                    "PyTorch FP32 model they came from on the same labeled images; writes report.json (+ "
                    "manifest), report.md, report.html and PNG plots. Default images: 1000 class-balanced, "
                    "seeded (seed 0) of the shared val split; --all for every image. " + BENCH_EXITS)
    p.add_argument("artifacts", nargs="*", help="ONNX files / engines with their manifests")
    p.add_argument("--from", dest="from_dir", help="also every ONNX / engine artifact under this run folder "
                   "(e.g. build/demo); missing FP16 / INT8 artifacts are reported, what exists is measured")
    p.add_argument("--model", help="PyTorch source of the FP32 reference (default: the one in the manifests)")
    p.add_argument("--no-pytorch", action="store_true",
                   help="no PyTorch reference: the first FP32 ONNX is the reference (device hosts without torch)")
    _add_measure_args(p, 1000, "1,8,32")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "verify", help="prove a built engine (or any artifact) on labeled images against its own ONNX",
        description="Run an engine (or an ONNX artifact) on a labeled subset and compare it with the ONNX it was "
                    "built from through ONNX Runtime (top-1 agreement, max logit error, accuracy); same report "
                    "format as bench. " + VERIFY_EXITS)
    p.add_argument("--engine", required=True, help="model.engine (or a .onnx artifact) with its manifest")
    p.add_argument("--reference", help="ONNX to compare with (default: the artifact's parent from its manifest)")
    p.add_argument("--min-top1-agreement", type=float, default=0.90,
                   help="fail (exit 1) below this top-1 agreement with the reference (default 0.90: low-confidence "
                        "models flip top-1 on near-ties; a broken engine agrees far less)")
    _add_measure_args(p, 500, "1,8")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "baseline", help="record a report as the gate's baseline (identity, figures, limits)",
        description="Write a baseline file from a real bench report: the hashes that identify model, image set "
                    "and preprocessing, every runner's accuracy, drift and p50 latency, and the gate limits. "
                    "Baselines are written by this command, never by hand, and committed under "
                    "benchmarks/baselines/. " + BASELINE_EXITS)
    p.add_argument("--report", required=True, help="report.json written by bench")
    p.add_argument("--out", help="baseline file (default benchmarks/baselines/<model name>.json)")
    _add_limit_args(p, "stored in the baseline; default 0.5 / 0.5 / off")
    p.set_defaults(func=cmd_baseline)

    p = sub.add_parser(
        "gate", help="CI pass/fail: a report against a committed baseline",
        description="Check a bench report against a baseline: same model/images/preprocessing (by hash), drift "
                    "against the reference within the limits, no runner's accuracy fallen more than the limits "
                    "since the baseline, optionally latency. Prints one screen and writes JUnit XML. " + GATE_EXITS)
    p.add_argument("--report", required=True, help="report.json written by bench")
    p.add_argument("--baseline", required=True, help="benchmarks/baselines/<name>.json")
    _add_limit_args(p, "overrides the baseline's")
    p.add_argument("--junit", help="write JUnit XML here (one testcase per check)")
    p.set_defaults(func=cmd_gate)
