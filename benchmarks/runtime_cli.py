"""CLI for the camera-runtime measurements: ``frame-accuracy`` and ``bench-runtime``."""
import argparse
import os
import sys
from typing import Any, Dict, List

from inception_deploy.pipeline import paths

DEFAULT_PHOTO = "n01443537_goldfish.JPEG"


def _sizes(text: str) -> List[Any]:
    from inception_deploy.pipeline.frame_variant import frame_sizes

    return frame_sizes([text])


def _write(out: str, stem: str, report: Dict[str, Any], table: str) -> None:
    from inception_deploy.pipeline import atomic

    os.makedirs(out, exist_ok=True)
    atomic.write_json(os.path.join(out, stem + ".json"), report)
    with atomic.atomic_path(os.path.join(out, stem + ".md")) as tmp:
        with open(tmp, "w") as f:
            f.write(table)
    print("written: %s.json, %s.md" % (os.path.join(out, stem), os.path.join(out, stem)))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_frame_accuracy(args: argparse.Namespace) -> int:
    from inception_deploy.benchmarks import frame_accuracy as fa

    settings = fa.Settings(sizes=_sizes(args.sizes), count=None if args.all else args.count, photos=not args.no_photos,
                           graph=not args.no_graph, threads=args.threads, reach=args.reach)
    report = fa.run(args.onnx, args.images, args.photos, settings, progress=_say)
    table = fa.markdown(report)
    print(table)
    _write(args.out, "frame-accuracy", report, table)
    return 0


def cmd_bench_runtime(args: argparse.Namespace) -> int:
    from inception_deploy.benchmarks import runtime_bench as rb

    settings = rb.Settings(sizes=_sizes(args.sizes), iterations=args.iterations, warmup=args.warmup,
                           threads=args.threads, frame_paths=[p.strip() for p in args.frame_paths.split(",")])
    report = rb.run(args.model, args.photo, settings, graph_models=args.graph_model or [], progress=_say)
    table = rb.markdown(report)
    if args.shadow:
        from PIL import Image

        from inception_deploy.pipeline.frame_variant import camera_frame

        with Image.open(args.photo) as img:
            frame = camera_frame(img, settings.sizes[0])
        cost = rb.shadow_overhead(args.shadow, frame, threads=args.threads)
        report["shadow"] = cost
        table += ("\nshadow monitor on %s (reference %s, budget %.0f %%, %s; %d x %d frames each way): CPU %.3f -> "
                  "%.3f ms/frame (%+.1f %%), wall %.3f -> %.3f ms/frame (%+.1f %%); %d comparisons, duty cycle %.1f %%\n"
                  % (cost["model"], cost["reference"], 100 * cost["budget"],
                     "background thread" if cost["background"] else "inline", cost["rounds"], cost["frames_per_block"],
                     cost["cpu_ms_without"], cost["cpu_ms_with"], 100 * cost["cpu_overhead"], cost["wall_ms_without"],
                     cost["wall_ms_with"], 100 * cost["wall_overhead"], cost["comparisons"], 100 * cost["duty_cycle"]))
    print(table)
    print("load average %s, CPU affinity %s" % (report["load_average"], report["cpu_affinity"]))
    _write(args.out, "runtime-bench", report, table)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("frame-accuracy", help="camera-frame preprocessing (fast CPU path, in-graph) vs the exact path",
                       description="Present the val images as camera frames (and the photos at their own sizes) and "
                                   "compare the network's outputs on the fast CPU frame path and on the in-graph "
                                   "preprocessing with those on the exact (timm/PIL) path: top-1 agreement, mean KL, "
                                   "top-5 overlap, accuracy. Exit codes: 0 measured, 2 unusable input.")
    p.add_argument("--onnx", required=True, help="the network model (model.onnx of an export, with its manifest)")
    p.add_argument("--images", default=paths.VAL_DIR, help="labeled images (default: the shared val split)")
    p.add_argument("--photos", default=paths.PHOTOS_DIR, help="photos measured at their own sizes (default: shared)")
    p.add_argument("--sizes", default="640x480,1280x720,1920x1080", help="camera frame sizes, WxH,...")
    p.add_argument("--count", type=int, default=1000, help="val images, class-balanced and seeded (default 1000)")
    p.add_argument("--all", action="store_true", help="every val image")
    p.add_argument("--no-photos", action="store_true")
    p.add_argument("--no-graph", action="store_true", help="skip the in-graph preprocessing (ONNX Runtime)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--reach", type=float, help="evaluate another box-reduction reach (pipeline.frame_plan)")
    p.add_argument("--out", required=True, help="folder for frame-accuracy.json / .md")
    p.set_defaults(func=cmd_frame_accuracy)

    p = sub.add_parser("bench-runtime", help="per-frame cost of runtime.Classifier: preprocess/inference/post",
                       description="Median preprocess, inference, postprocess and classify times of one camera frame "
                                   "at each size, and their ratio to inference. Run under taskset -c 1 for per-core "
                                   "figures (make bench-runtime does). Exit codes: 0 measured, 2 unusable input.")
    p.add_argument("--model", required=True, help="model.onnx or model.engine (with its manifest)")
    p.add_argument("--graph-model", action="append", help="also time a frame-input variant (model.frame-WxH.onnx)")
    p.add_argument("--photo", default=os.path.join(paths.PHOTOS_DIR, DEFAULT_PHOTO), help="the photo made into frames")
    p.add_argument("--sizes", default="640x480,1280x720,1920x1080", help="frame sizes, WxH,...")
    p.add_argument("--frame-paths", default="fast,exact", help="CPU preprocessing paths to time (fast,exact)")
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    p.add_argument("--shadow", metavar="DEPLOYED", help="also measure the shadow monitor's cost on this deployed "
                   "artifact (e.g. model.int8.onnx; reference and expected agreement from its manifests)")
    p.add_argument("--out", required=True, help="folder for runtime-bench.json / .md")
    p.set_defaults(func=cmd_bench_runtime)
