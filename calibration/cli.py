"""CLI for the calibration stage: ``inception-deploy calibrate``."""
import argparse
from typing import Any, List, Optional

from inception_deploy.pipeline import paths


def _list(text: Optional[str]) -> List[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _count(text: str) -> Optional[int]:
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of images or 'all', got {text!r}") from None


def cmd_calibrate(args: argparse.Namespace) -> int:
    from inception_deploy.calibration import methods, stage
    from inception_deploy.pipeline.errors import CheckFailed

    compare = _list(args.compare_methods)
    if compare == ["all"]:
        compare = list(methods.METHODS)
    opts = stage.Options(
        onnx_path=args.onnx, images=args.images, precisions=_list(args.precision), method=args.method or stage.DEFAULT_METHOD,
        count=args.count, seed=args.seed, batch_size=args.batch_size, out_dir=args.out,
        eval_images=args.eval_images, eval_count=args.eval_count, budget=args.accuracy_budget,
        max_minutes=args.max_minutes, high_precision=args.high_precision, cache_version=args.cache_version,
        trt_check=not args.no_trt_check, compare_methods=compare, nodes_to_exclude=_list(args.exclude_nodes),
        stats_cache=not args.no_stats_cache, bias_correction=not args.no_bias_correction)
    out = stage.run(opts)
    for kind, manifest in sorted(out.manifests.items()):
        print(f"{kind}: {manifest.stage.get('summary', '')}")
    if out.int8:
        print(f"int8: {out.int8}\ncache: {out.cache}")
    if out.fp16:
        print(f"fp16: {out.fp16}")
    if out.budget_met is False:
        raise CheckFailed(f"accuracy budget {args.accuracy_budget} not met ({out.budget_stopped}); the best model found "
                          "was written (its manifest's stage.budget has every step); try another --method (default "
                          f"{stage.DEFAULT_METHOD}), more --eval-count images, a looser budget or a larger --max-minutes")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate", help="INT8 (Q/DQ) and FP16 ONNX from an exported model, with drift and an accuracy budget",
        description="Write <stem>.int8.onnx (explicit Q/DQ via NVIDIA Model Optimizer, per-channel weights, "
                    "per-tensor activations), the TensorRT calibration cache <stem>.int8.calib.cache with its "
                    "'calibration' manifest, and/or <stem>.fp16.onnx (AutoCast, FP32 I/O), each with a manifest, "
                    "beside the input ONNX (or in --out). Activation ranges come from one ONNX Runtime pass that "
                    "histograms every activation (cached by model + image hashes). Exit codes: 0 ok, 1 a check "
                    "failed (accuracy budget not met: the best model found is still written), 2 bad input "
                    "(missing files, calibration images that are also evaluation images, fewer images than a "
                    "batch), 3 unsupported here.")
    p.add_argument("--onnx", required=True, help="the exported FP32 model.onnx (with its manifest)")
    p.add_argument("--images", default=paths.CALIB_DIR,
                   help="calibration image folder, labeled or not (default: the shared calib/ split)")
    p.add_argument("--precision", default="int8", help="int8, fp16 or int8,fp16 (default int8)")
    p.add_argument("--method", default=None,
                   help="activation ranges: max, entropy, mse, percentile-99.9, percentile-99.99, percentile-99.999 "
                        "(default percentile-99.999: lowest KL and highest top-1 agreement of the six on the test "
                        "model, see docs/calibration.md)")
    p.add_argument("--count", type=int, default=500, help="calibration images, class-balanced and seeded (default 500)")
    p.add_argument("--seed", type=int, default=0, help="image selection and evaluation split seed (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="images per ONNX Runtime batch (default 32)")
    p.add_argument("--out", help="output folder (default: the input ONNX's folder)")
    p.add_argument("--eval-images", help="labeled folder to measure drift against FP32 (e.g. the shared val/); "
                                         "refused if it shares files with --images")
    p.add_argument("--eval-count", type=_count, default=1000,
                   help="evaluation images, class-balanced and seeded, or 'all' (default 1000)")
    p.add_argument("--accuracy-budget", metavar="top1=P,top5=P",
                   help="allowed top-1/top-5 drop in points vs FP32 on --eval-images; when over, the most "
                        "sensitive layers are kept in --high-precision until it holds")
    p.add_argument("--max-minutes", type=float, default=10.0, help="time limit of the budget search (default 10)")
    p.add_argument("--high-precision", choices=("fp32", "fp16"), default="fp32",
                   help="precision of the layers left unquantized (default fp32)")
    p.add_argument("--exclude-nodes", help="comma-separated ONNX node names to keep out of INT8")
    p.add_argument("--compare-methods", help="comma-separated methods (or 'all') to evaluate side by side on "
                                             "--eval-images from the same histograms")
    p.add_argument("--cache-version", default="100000",
                   help="version in the cache header TRT-<version>-EntropyCalibration2 (default 100000)")
    p.add_argument("--no-trt-check", action="store_true", help="skip the TensorRT-RTX INT8 build layer check")
    p.add_argument("--no-stats-cache", action="store_true", help="recompute the activation histograms")
    p.add_argument("--no-bias-correction", action="store_true",
                   help="leave the convolutions' FP32 biases as exported (default: correct them for the mean error "
                        "their INT8 weights add, from the calibration images' channel means)")
    p.set_defaults(func=cmd_calibrate)
