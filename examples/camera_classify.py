#!/usr/bin/env python3
"""Classify a camera, video, RTSP stream or image folder with a built engine or an ONNX model.

    python examples/camera_classify.py build/demo/onnx/model.onnx --source 0
    python examples/camera_classify.py model.engine --source csi://0 --width 1920 --height 1080
    python examples/camera_classify.py model.engine --source rtsp://192.168.1.20:8554/cam --print-pipeline
    python examples/camera_classify.py model.int8.onnx --source clip.mp4 --headless --shadow

Capture runs in its own thread and the newest frame is classified (no queue builds up behind a slow
model). Prints the top-k, FPS and per-stage times per frame, or overlays them in a window (q / Esc
quits). Exit codes: 0 ok, 2 unusable input (model, manifest, source, option), 3 unsupported here
(no TensorRT for an engine, no GStreamer/FFmpeg in this OpenCV). Device-side: numpy + OpenCV +
the runtime, Python 3.8. The machinery is in runtime/ (sources, capture, profiler, shadow, display).
"""
import argparse
import os
import sys

try:
    from inception_deploy import runtime  # noqa: F401 - installed package (pip install -e .)
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inception_deploy.pipeline.errors import EXIT_BAD_INPUT, UserError  # noqa: E402
from inception_deploy.runtime import Classifier, options, shadow  # noqa: E402
from inception_deploy.runtime.capture import Capture  # noqa: E402
from inception_deploy.runtime.display import Output  # noqa: E402
from inception_deploy.runtime.profiler import Profiler  # noqa: E402
from inception_deploy.runtime.smoothing import ProbabilityEMA  # noqa: E402
from inception_deploy.runtime.sources import describe_pipeline, open_source, parse_source  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Classify frames from a camera, video, RTSP stream or image folder.")
    p.add_argument("model", help="model.engine (TensorRT) or model.onnx (ONNX Runtime), with its .json manifest")
    p.add_argument("--source", default="0", help="csi://0, v4l2:///dev/video0, rtsp://..., file://PATH, a path, "
                                                 "a camera index, or a GStreamer pipeline ending in appsink (default 0)")
    p.add_argument("--top-k", type=int, default=5, help="classes to show per frame (default 5)")
    p.add_argument("--threshold", type=float, default=0.0, help="show only classes at least this probable")
    p.add_argument("--smoothing", type=float, default=1.0, help="weight of the newest frame in an average of the "
                                                                "probabilities over frames (default 1: none)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: until the source ends)")
    p.add_argument("--headless", action="store_true", help="never open a window; print one line per frame")
    p.add_argument("--json", action="store_true", help="print one JSON object per frame")
    p.add_argument("--exact-preprocessing", action="store_true", help="CPU path bit-exact with timm (slower)")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay the engine as a CUDA graph")
    options.add_arguments(p)
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    options.check(args)
    spec = parse_source(args.source)
    if args.print_pipeline:
        print(describe_pipeline(spec, options.source_options(args)))
        return 0
    clf = Classifier.load(args.model, threads=args.threads, cuda_graph=args.cuda_graph,
                          frame_path="exact" if args.exact_preprocessing else "fast")
    source_options = options.source_options(args, clf.frame_size)
    monitor = shadow.attach(clf, args.shadow_reference, args.shadow_expect, options.shadow_settings(args),
                            args.shadow_log) if args.shadow else None
    smoother, profiler, out = ProbabilityEMA(args.smoothing), Profiler(), Output(args.headless, args.json)
    if not args.json:
        print("%s on %s, source %s (%s)%s" % (os.path.basename(args.model), clf.backend.name, spec.uri,
                                             "window" if out.window else "headless",
                                             ", shadow reference %s" % monitor.reference_path if monitor else ""))
    try:
        with Capture(open_source(spec, source_options)) as capture:
            while not args.max_frames or profiler.frames < args.max_frames:
                frame = capture.get()
                if frame is None:
                    break
                profiler.add("capture", frame.capture_ms)
                with profiler.stage("preprocess"):
                    x = clf.preprocess(frame.image)
                with profiler.stage("inference"):
                    logits = clf.logits(x[None])
                with profiler.stage("post"):
                    top = clf.rank(smoother.update(clf.probabilities(logits)[0]), args.top_k, args.threshold)
                if monitor:
                    monitor.observe(frame.image, logits[0])
                profiler.frame_done()
                if not out.frame(frame.image, frame.index, top, profiler, monitor.stats() if monitor else None):
                    break
    finally:
        out.close()
        if monitor:
            monitor.close()
        clf.close()
    if not args.json:
        print("%d frames, %s" % (profiler.frames, profiler.line()))
    if profiler.frames == 0:
        print("error: %s delivered no frames" % spec.uri, file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def main(argv=None) -> int:
    try:
        return run(parse_args(argv))
    except UserError as e:   # Unsupported is a UserError with exit code 3
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code
    except ValueError as e:  # a frame the model cannot take (e.g. another size than its graph's)
        print("error: %s" % e, file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
