"""Command-line options a camera app shares (source, capture, shadow monitor), and their checks.

``add_arguments(parser)`` adds them; ``source_options(args)`` / ``shadow_settings(args)`` turn
them into the runtime's records; ``check(args)`` refuses out-of-range values with one sentence
each (UserError), before anything is opened. Device-side, Python 3.8.
"""
import argparse
from typing import Any, Optional, Tuple

from inception_deploy.pipeline.errors import UserError
from inception_deploy.runtime.shadow import ShadowSettings
from inception_deploy.runtime.sources import CODECS, SourceOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("source (csi:// v4l2:// rtsp:// cameras)")
    g.add_argument("--width", type=int, help="capture width (default: the model's frame size if its graph takes "
                                             "frames, else 1280)")
    g.add_argument("--height", type=int, help="capture height (default: the model's frame size, else 720)")
    g.add_argument("--fps", type=int, default=30, help="capture frame rate (default 30)")
    g.add_argument("--codec", choices=CODECS, default="h264", help="RTSP stream codec (default h264)")
    g.add_argument("--latency", type=int, default=200, help="RTSP jitter buffer in ms (default 200)")
    g.add_argument("--flip", type=int, default=0, help="CSI: nvvidconv flip-method (default 0)")
    g.add_argument("--loop", action="store_true", help="files and image folders: start again at the end")
    g.add_argument("--print-pipeline", action="store_true", help="print the GStreamer pipeline and a gst-launch-1.0 "
                                                                   "line to debug it, then exit")
    g = p.add_argument_group("shadow-mode drift monitor")
    g.add_argument("--shadow", action="store_true", help="compare the model with its FP32/FP16 reference on a few "
                                                         "frames and warn when they disagree more than measured offline")
    g.add_argument("--shadow-reference", help="reference artifact (default: found through the manifests)")
    g.add_argument("--shadow-expect", help="offline top-1 agreement: a number, or a verify report.json (default: the "
                                           "calibrate stage's figure in the manifests)")
    g.add_argument("--shadow-budget", type=float, default=ShadowSettings.budget,
                   help="fraction of time the reference may use (default %.2f)" % ShadowSettings.budget)
    g.add_argument("--shadow-every", type=int, default=0, help="reference on every Nth frame instead of a budget")
    g.add_argument("--shadow-inline", action="store_true", help="run the reference in the classification loop "
                                                                "instead of its own thread")
    g.add_argument("--shadow-log", help="append one JSON line per comparison to this file")


def check(args: Any) -> None:
    """One sentence per bad value (UserError, exit 2)."""
    if args.top_k < 1:
        raise UserError("--top-k must be a positive number of classes, got %d" % args.top_k)
    if args.max_frames < 0:
        raise UserError("--max-frames must be 0 (until the source ends) or a positive number of frames, got %d"
                        % args.max_frames)
    if not 0.0 <= args.threshold <= 1.0:
        raise UserError("--threshold is a probability between 0 and 1, got %g" % args.threshold)
    if not 0.0 < args.smoothing <= 1.0:
        raise UserError("--smoothing is the weight of the newest frame, in (0, 1] (1: none), got %g" % args.smoothing)
    if min(args.width or 1, args.height or 1, args.fps) < 1 or args.latency < 0:
        raise UserError("--width, --height and --fps must be positive and --latency >= 0")
    if args.shadow and args.shadow_every < 0:
        raise UserError("--shadow-every must be 0 (use the budget) or a positive number of frames")


def source_options(args: Any, frame_size: Optional[Tuple[int, int]] = None) -> SourceOptions:
    """Capture settings; a camera captures at the model's frame size when its graph takes frames."""
    height, width = frame_size or (720, 1280)
    return SourceOptions(width=args.width or width, height=args.height or height, fps=args.fps, codec=args.codec,
                         latency_ms=args.latency, flip=args.flip, loop=args.loop)


def shadow_settings(args: Any) -> ShadowSettings:
    return ShadowSettings(budget=args.shadow_budget, every=args.shadow_every, background=not args.shadow_inline)
