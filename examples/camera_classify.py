#!/usr/bin/env python3
"""Classify a camera / video / RTSP / GStreamer stream with a built engine or an ONNX model.

    python examples/camera_classify.py build/demo/onnx/model.onnx --source 0
    python examples/camera_classify.py model.engine --source clip.mp4 --headless
    python examples/camera_classify.py model.engine --source rtsp://192.168.1.20:8554/cam
    python examples/camera_classify.py model.engine --source "nvarguscamerasrc ! video/x-raw(memory:NVMM),
        width=1280,height=720 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink"

Prints the top-5 and the running FPS for each frame; with a display (and an OpenCV with GUI
support) it overlays them on the video instead, ``q`` or Esc quits. ``--headless`` never opens a
window (CI, services). RTSP needs an OpenCV built with FFmpeg, a GStreamer pipeline an OpenCV
built with GStreamer (JetPack's OpenCV has it; PyPI wheels do not): the example says which is
missing instead of failing silently.

Exit codes: 0 ok (end of stream or --max-frames reached), 2 unusable input (model, manifest,
source that cannot be opened), 3 unsupported here (no TensorRT for an engine, no GStreamer/FFmpeg
in this OpenCV). Device-side: numpy + OpenCV + the runtime, Python 3.8.
"""
import argparse
import json
import os
import sys
import time
from typing import Any, List, Optional, Tuple

try:
    from inception_deploy import runtime  # noqa: F401 - installed package (pip install -e .)
except ImportError:  # run from a source checkout without installing
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from inception_deploy.pipeline.errors import EXIT_BAD_INPUT, Unsupported, UserError  # noqa: E402
from inception_deploy.runtime import Classifier, Prediction  # noqa: E402

WINDOW = "inception-deploy"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Classify frames from a camera, video file, RTSP URL or GStreamer pipeline.",
        epilog="exit codes: 0 ok, 2 unusable input (model, manifest, source), 3 unsupported here "
               "(no TensorRT for an engine, no GStreamer/FFmpeg in this OpenCV)")
    p.add_argument("model", help="model.engine (TensorRT) or model.onnx (ONNX Runtime), with its .json manifest")
    p.add_argument("--source", default="0",
                   help="camera index (0), video file, rtsp:// URL, or a GStreamer pipeline ending in appsink "
                        "(default: 0)")
    p.add_argument("--top-k", type=int, default=5, help="classes to show per frame (default 5)")
    p.add_argument("--headless", action="store_true", help="never open a window; print one line per frame")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: until the stream ends)")
    p.add_argument("--json", action="store_true", help="print one JSON object per frame (for scripts and CI)")
    p.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay the engine as a CUDA graph")
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: default)")
    return p.parse_args(argv)


# -- the source ---------------------------------------------------------------------------------
def source_kind(source: str) -> str:
    """camera | gstreamer | stream | file, from the --source string."""
    if source.strip().isdigit():
        return "camera"
    if "!" in source:
        return "gstreamer"
    if "://" in source:
        return "stream"
    return "file"


def _has_backend(cv2: Any, backend: int, name: str) -> bool:
    registry = getattr(cv2, "videoio_registry", None)
    if registry is not None and hasattr(registry, "hasBackend"):
        try:
            return bool(registry.hasBackend(backend))
        except Exception:
            pass
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith(name + ":"):
            return "YES" in line
    return False


def open_source(source: str) -> Any:
    """A cv2.VideoCapture that is open, or UserError / Unsupported saying why not."""
    import cv2

    kind = source_kind(source)
    if kind == "gstreamer":
        if not _has_backend(cv2, cv2.CAP_GSTREAMER, "GStreamer"):
            raise Unsupported("this OpenCV (%s) has no GStreamer support, needed for a pipeline source; use JetPack's "
                              "OpenCV or one built with -DWITH_GSTREAMER=ON, or pass a camera index / file / URL"
                              % cv2.__version__)
        cap = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
    elif kind == "stream":
        if not (_has_backend(cv2, cv2.CAP_FFMPEG, "FFMPEG") or _has_backend(cv2, cv2.CAP_GSTREAMER, "GStreamer")):
            raise Unsupported("this OpenCV (%s) has neither FFmpeg nor GStreamer, needed for %s"
                              % (cv2.__version__, source.split("://")[0] + "://"))
        cap = cv2.VideoCapture(source)
    elif kind == "camera":
        cap = cv2.VideoCapture(int(source))
    else:
        if not os.path.isfile(source):
            raise UserError("video file not found: %s (expected a camera index, a file, an rtsp:// URL or a GStreamer "
                            "pipeline)" % source)
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise UserError("cannot open %s source %r (camera busy or absent, unreachable URL, unsupported codec?)"
                        % (kind, source))
    return cap


# -- output ------------------------------------------------------------------------------------
class FpsMeter:
    """Frames per second over a sliding window of recent frames (what a viewer perceives)."""

    def __init__(self, window: int = 30) -> None:
        self.window = window
        self.stamps: List[float] = []

    def tick(self) -> float:
        self.stamps.append(time.perf_counter())
        self.stamps = self.stamps[-(self.window + 1):]
        if len(self.stamps) < 2:
            return 0.0
        return (len(self.stamps) - 1) / max(self.stamps[-1] - self.stamps[0], 1e-9)


def display_available(headless: bool) -> bool:
    """A window can be shown: not --headless, a display server, and an OpenCV with a GUI backend."""
    if headless:
        return False
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    import cv2
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return "NONE" not in line
    return True


def overlay(frame: Any, predictions: List[Prediction], fps: float) -> None:
    import cv2

    lines = ["%.1f fps" % fps] + ["%5.1f%% %s" % (100 * p.probability, p.label_name) for p in predictions]
    for i, text in enumerate(lines):
        org = (10, 28 + 26 * i)
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 4, cv2.LINE_AA)
        cv2.putText(frame, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)


def report_line(index: int, predictions: List[Prediction], fps: float, ms: float, as_json: bool) -> str:
    if as_json:
        return json.dumps({"frame": index, "fps": round(fps, 2), "ms": round(ms, 3),
                           "top": [{"label_id": p.label_id, "label": p.label, "name": p.label_name,
                                    "probability": round(p.probability, 6)} for p in predictions]})
    top = ", ".join("%s %.1f%%" % (p.label_name, 100 * p.probability) for p in predictions)
    return "frame %5d  %6.1f fps  %6.2f ms  %s" % (index, fps, ms, top)


# -- the loop ----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> Tuple[int, float]:
    """Classify until the stream ends or --max-frames; returns (frames, mean fps)."""
    clf = Classifier.load(args.model, threads=args.threads, cuda_graph=args.cuda_graph)
    cap = open_source(args.source)
    show = display_available(args.headless)
    meter = FpsMeter()
    frames, fps, started = 0, 0.0, time.perf_counter()
    if not args.json:
        print("%s on %s, source %s (%s)" % (os.path.basename(args.model), clf.backend.name, args.source,
                                          "window" if show else "headless"), flush=True)
    try:
        while not args.max_frames or frames < args.max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                break   # end of file, or the camera/stream stopped delivering
            t0 = time.perf_counter()
            predictions = clf.classify(frame, top_k=args.top_k)
            ms = (time.perf_counter() - t0) * 1e3
            fps = meter.tick()
            frames += 1
            if show:
                import cv2
                overlay(frame, predictions, fps)
                cv2.imshow(WINDOW, frame)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            else:
                print(report_line(frames - 1, predictions, fps, ms, args.json), flush=True)
    finally:
        cap.release()
        clf.close()
        if show:
            import cv2
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - started
    return frames, frames / elapsed if elapsed > 0 else 0.0


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        frames, mean_fps = run(args)
    except UserError as e:   # Unsupported is a UserError with exit code 3
        print("error: %s" % e, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    if not args.json:
        print("%d frames, %.1f fps overall" % (frames, mean_fps))
    if frames == 0:
        print("error: the source delivered no frames", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
