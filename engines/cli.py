"""CLI for the engines stage: ``build`` (an engine, or a deploy bundle) and ``targets``.

Imports stay inside the command functions: ``inception-deploy --help`` stays fast, and this file
is also the entry point of a deploy bundle (``python3 -m inception_deploy.engines build ...``) on a device with
only its system Python and TensorRT; errors and exit codes come from the one runner,
:func:`pipeline.command.run` (standard library only).
"""
import argparse
import os
import sys
import textwrap
from typing import Any, List, Optional

from inception_deploy.pipeline.command import build_parser, run

BUILD_HELP = """Build a TensorRT engine for a target, from the ONNX the export/calibrate stages wrote:
fp32 <- model.onnx, fp16 <- model.fp16.onnx, int8 <- model.int8.onnx (Q/DQ), or for targets with
int8_mode = implicit: model.onnx + the TensorRT calibration cache. Writes
<out>/engines/<target>/<model>/<precision>/model.engine + model.engine.json (+ the build log).
Where this machine cannot build the target (a Jetson or datacenter target here), it says why and
writes a deploy bundle <out>/bundle/<target>/ to build on the device instead.
Exit codes: 0 engine built (or up to date) or bundle written, 2 unusable input (missing artifact,
opset above the target's ceiling, bad option), 3 the installed TensorRT cannot do what was asked
(or --no-bundle and this machine cannot build the target)."""


def _shown(path: str) -> str:
    """A path as the user typed it: relative below the current folder, else absolute."""
    rel = os.path.relpath(path)
    return os.path.abspath(path) if rel.startswith("..") else rel


def _echo(text: str) -> None:
    print(text, file=sys.stderr)


def cmd_build(args: argparse.Namespace) -> int:
    from inception_deploy.engines import builder, host, targets
    from inception_deploy.engines.trt_api import import_tensorrt
    from inception_deploy.pipeline.errors import Unsupported

    from inception_deploy.pipeline.frame_io import parse_frame_size

    request = builder.BuildRequest.resolve(
        args.target, args.precision, args.dla_core, calib_cache=args.calib_cache, softmax=args.softmax,
        batch=targets.BatchProfile.parse(args.batch) if args.batch else None, workspace_mib=args.workspace_mib,
        compute_capabilities=[c.strip() for c in args.compute_capabilities.split(",")]
        if args.compute_capabilities else None,
        frame_input=parse_frame_size(args.frame_input) if args.frame_input else None)
    target, precision = request.target, request.precision
    if args.target.strip().lower() != target.name:
        print("target %s -> %s (%s)" % (args.target, target.name, target.description))
    onnx = args.onnx or args.onnx_dir
    try:
        api = import_tensorrt(prefer=target.flavour)  # type: Any
    except Unsupported:
        api = None
    machine = host.detect()
    reason = "a bundle was asked for (--bundle)" if args.bundle else builder.why_not_here(target, api, machine)
    if reason is None:
        result = builder.build(request, onnx, os.path.join(args.out, "engines"), api, machine, builder.BuildOptions(
            use_timing_cache=not args.no_timing_cache, progress=not args.quiet, force=args.force, echo=_echo))
        _print_built(result, precision)
        return 0
    if args.no_bundle:
        raise Unsupported("cannot build %s here: %s" % (target.name, reason))
    _bundle(args, request, onnx, reason)
    return 0


def _bundle(args: argparse.Namespace, request: Any, onnx: str, reason: str) -> None:
    """Write ``<out>/bundle/<target>/`` under its run lock and say what it holds and how to use it."""
    from inception_deploy.engines.bundle import EvalOptions, write_bundle
    from inception_deploy.engines.deploy_files import copy_hint
    from inception_deploy.pipeline.publish import RunLock

    target, precision, dla_core = request.target, request.precision, request.dla_core
    evals = None if args.no_eval_set else EvalOptions(images=args.eval_images or _default_eval_images(),
                                                     count=args.eval_count, seed=args.eval_seed,
                                                     deepstream_check=not args.no_deepstream_check)
    with RunLock(os.path.join(args.out, "bundle"), "build --target %s (bundle)" % target.name):
        result = write_bundle(onnx, target, args.out, precision, reason, calib_cache=request.calib_cache,
                              dla_core=dla_core, eval_options=evals)
    rel = _shown(result.path)
    stage = result.manifest.stage
    extras = ["verify_on_device.sh with %d images and the host's FP32 logits" % stage["eval_set"]["count"]] \
        if stage.get("eval_set") else []
    extras += ["the equivalent trtexec commands", "a DeepStream config" + (" and a Triton config"
                                                                        if target.platform == "datacenter" else "")]
    paragraph = (("No %s engine built here: %s. Instead this wrote a deploy bundle, %s (%d files, %.1f MB), with "
                  "the ONNX it builds from (%s), manifests, %sthe builder itself (python/, standard library + "
                  "TensorRT) behind build_on_device.sh, " + ", ".join(extras) + ". It needs %s.")
                 % (target.name, reason, rel, len(result.files), result.bytes / 1e6,
                    ", ".join("%s: %s" % kv for kv in result.precisions.items()),
                    "the calibration cache, " if stage.get("calibration") else "", target.jetpack or target.tensorrt))
    print(textwrap.fill(paragraph, width=100))
    for note in result.notes:
        print("  note: " + note)
    print("copy it to the device and build there:")
    for line in copy_hint(rel, target, precision, dla_core):
        print("  " + line)


def _print_built(result: Any, precision: str) -> None:
    print("engine %s: %s" % ("up to date" if result.skipped else "built", result.manifest.stage["summary"]))
    print("  %s (+ .json manifest, .log builder log)" % _shown(result.engine_path))
    if result.layers.concat_non_int8 and precision == "int8":
        print("  note: %d tensor(s) at Concat are not Int8 (see stage.layers.concat_non_int8 in the manifest)"
              % len(result.layers.concat_non_int8))


def _default_eval_images() -> Optional[str]:
    """The shared val split where this checkout has it (the bundle's verification images), else none."""
    try:
        from inception_deploy.pipeline import paths
    except ImportError:  # a bundle's python/ (no paths module): bundles are written on the host
        return None
    return paths.VAL_DIR if os.path.isdir(paths.VAL_DIR) else None


def version_matrix() -> str:
    """The README's version matrix, generated from the target files (``targets --markdown``)."""
    from inception_deploy.engines import targets

    rows = ["| target | aliases | GPU (sm) | DLA | TensorRT | JetPack | CUDA | Python | DeepStream | ONNX opset <= | "
            "INT8 from |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in targets.load_targets().values():
        int8 = "Q/DQ ONNX" if t.int8_mode == "qdq" else "FP32 ONNX + calibration cache"
        if t.has_dla:
            int8 += "; DLA: %s" % ("Q/DQ ONNX" if t.dla.int8_mode == "qdq" else "calibration cache")
        rows.append("| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |" % (
            t.name, ", ".join(t.aliases), ", ".join(t.compute_capabilities), t.dla.cores or "-", t.tensorrt.split(" (")[0],
            t.jetpack.split(" (")[0] if t.jetpack else "-", t.cuda or "-", t.python or "-", t.deepstream or "-",
            t.max_opset, int8))
    return "\n".join(rows) + "\n"


def cmd_targets(args: argparse.Namespace) -> int:
    from inception_deploy.engines import targets
    from inception_deploy.engines.trt_api import installed

    if getattr(args, "markdown", False):
        print(version_matrix(), end="")
        return 0
    table = targets.load_targets()
    here = installed()
    rows: List[List[str]] = [["target", "aliases", "builds with", "sm", "precisions", "batch", "DLA", "opset<=",
                              "needs"]]
    for t in table.values():
        rows.append([t.name, ",".join(t.aliases), "TensorRT-RTX" if t.flavour == "tensorrt_rtx" else "TensorRT",
                     ",".join(t.compute_capabilities), ",".join(t.precisions) + " (%s)" % t.default_precision,
                     t.batch.label(), str(t.dla.cores) if t.has_dla else "-", str(t.max_opset),
                     t.jetpack or t.tensorrt])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1])
    if here:
        print("installed: " + ", ".join(api.label for api in here))
    else:
        print("installed: no TensorRT (every target gets a deploy bundle)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from inception_deploy.engines.inspect import inspect, render

    record = inspect(args.file)
    print(json.dumps(record, indent=1) if args.json else render(record))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("build", help="build a TensorRT engine for a target (or write a deploy bundle)",
                       description=BUILD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--onnx-dir", help="folder with model.onnx (+ model.fp16.onnx, model.int8.onnx, calibration "
                                        "cache), e.g. build/demo/onnx")
    src.add_argument("--onnx", help="one ONNX file (its manifest kind must fit --precision)")
    p.add_argument("--target", required=True,
                   help="target name or alias (see `inception-deploy targets`), e.g. rtx, jetson, datacenter-hopper")
    p.add_argument("--precision", choices=("int8", "fp16", "fp32"), help="default: the target's default precision")
    p.add_argument("--out", required=True, help="run folder: engines go to <out>/engines/, bundles to <out>/bundle/")
    p.add_argument("--calib-cache", help="TensorRT calibration cache (default: the one beside the ONNX)")
    p.add_argument("--frame-input", metavar="WxH", help="build the variant that takes WxH uint8 BGR camera frames "
                   "and preprocesses them on the GPU (model[.fp16|.int8].frame-WxH.onnx, from export --frame-input)")
    p.add_argument("--dla-core", type=int, help="DLA core to build for (-1: GPU; default: the target's)")
    p.add_argument("--batch", help="MIN,OPT,MAX batch profile (default: the target's)")
    p.add_argument("--workspace-mib", type=int, help="builder workspace limit (default: the target's)")
    p.add_argument("--compute-capabilities", help="TensorRT-RTX AOT list, e.g. 8.6,8.9 (default: the target's)")
    p.add_argument("--no-timing-cache", action="store_true", help="do not load/save the timing cache")
    p.add_argument("--force", action="store_true", help="rebuild even if an up-to-date engine exists")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bundle", action="store_true", help="write a deploy bundle even if this machine could build")
    where.add_argument("--no-bundle", action="store_true", help="fail (exit 3) instead of writing a bundle")
    p.add_argument("--softmax", action="store_true",
                   help="append a Softmax: the engine outputs probabilities (what DeepStream's classifier parser "
                        "reads) and goes to <precision>-softmax/")
    p.add_argument("--eval-images", help="bundle: labeled images for verify_on_device.sh (default: the shared val "
                                         "split)")
    p.add_argument("--eval-count", type=int, default=1000,
                   help="bundle: class-balanced images to ship for verification (default 1000, as bench)")
    p.add_argument("--eval-seed", type=int, default=0, help="bundle: seed of that choice (default 0, as bench)")
    p.add_argument("--no-eval-set", action="store_true", help="bundle: ship no verification images")
    p.add_argument("--no-deepstream-check", action="store_true",
                   help="bundle: do not measure nvinfer-style preprocessing against the model's own")
    p.add_argument("--quiet", action="store_true", help="no build progress")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("targets", help="list the deployment targets (engines/targets/*.toml)",
                       description="List the targets the build command knows, their aliases, precisions, batch "
                                   "profile, DLA cores, ONNX opset ceiling and TensorRT/JetPack needs. Exit codes: 0.")
    p.add_argument("--markdown", action="store_true",
                   help="print the version matrix (TensorRT, JetPack, CUDA, Python, DeepStream) as the README's table")
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("inspect", help="what an ONNX model or engine is: I/O, opsets, nodes, Q/DQ, manifest chain",
                       description="Inspect an .onnx file (I/O via Polygraphy, opsets, node counts by type, "
                                   "initializer dtypes, Q/DQ summary, manifest chain) or an engine (its manifest: "
                                   "TensorRT, target, precision, batch profile, DLA, layer summary; TensorRT's "
                                   "EngineInspector where the plan can be deserialized, else why not). Exit codes: "
                                   "0 printed; 2 unreadable file or manifest.")
    p.add_argument("file", help="model.onnx / model.int8.onnx / model.engine")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=cmd_inspect)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``python -m inception_deploy.engines`` (a deploy bundle on a device): this stage's commands
    under the one runner of :mod:`pipeline.command` (same errors and exit codes)."""
    return run(build_parser(("inception_deploy.engines.cli",), prog="python -m inception_deploy.engines",
                            description="inception-deploy engine builder (device side)"), argv)
