"""Video sources by URI, like jetson-inference's ``videoSource``, with printable GStreamer pipelines.

    csi://0                      MIPI CSI camera (Jetson): nvarguscamerasrc -> nvvidconv -> BGR
    v4l2:///dev/video0           USB / V4L2 camera (GStreamer, or OpenCV's V4L2 backend without it)
    rtsp://host:8554/stream      RTSP: latency-bounded rtspsrc + decoder (nvv4l2decoder on a Jetson),
                                 or OpenCV with FFmpeg where this OpenCV has no GStreamer
    file:///path/clip.mp4, a path      a video file (OpenCV), an image folder or one image
    0                            a camera index (OpenCV)
    "... ! appsink"              a GStreamer pipeline as given

Every GStreamer pipeline ends in ``appsink drop=true max-buffers=1 sync=false`` (the newest frame
only, never a growing queue). :func:`describe_pipeline` shows the pipeline and the ``gst-launch-1.0``
line to debug it by hand (``--print-pipeline`` in the example). Values that come from the user
(URLs, paths) are quoted for GStreamer's parser and for the shell, never pasted in raw.
Device-side: OpenCV + numpy, Python 3.8.
"""
import os
import shlex
from dataclasses import dataclass
from typing import Any, List, Optional

import numpy as np

from inception_deploy.pipeline.errors import Unsupported, UserError

KINDS = ("csi", "v4l2", "rtsp", "file", "folder", "image", "index", "gstreamer")
CODECS = ("h264", "h265")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
APPSINK = "appsink drop=true max-buffers=1 sync=false"
TO_BGR = "videoconvert ! video/x-raw,format=BGR"


@dataclass(frozen=True)
class SourceOptions:
    """Capture settings (camera sources); RTSP ``latency_ms`` bounds the jitter buffer."""

    width: int = 1280
    height: int = 720
    fps: int = 30
    codec: str = "h264"
    latency_ms: int = 200
    flip: int = 0                    # nvvidconv flip-method (0 none, 2 rotate 180, ...)
    loop: bool = False               # files and image folders: start again at the end
    jetson: Optional[bool] = None    # hardware decoder / converter; None: detect


@dataclass(frozen=True)
class SourceSpec:
    """What a ``--source`` string means."""

    uri: str
    kind: str
    location: str                    # device, URL, path, camera index or pipeline
    live: bool                       # a camera or stream: frames come whether or not they are read


def parse_source(uri: str) -> SourceSpec:
    """``--source`` string -> :class:`SourceSpec`; UserError naming the accepted forms otherwise."""
    text = str(uri).strip()
    if not text:
        raise UserError("empty --source; expected csi://N, v4l2:///dev/videoN, rtsp://..., file://PATH, a path, a camera "
                        "index or a GStreamer pipeline ending in appsink")
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme == "csi":
        if not rest.isdigit():
            raise UserError("csi://%s: expected a sensor number, e.g. csi://0" % rest)
        return SourceSpec(text, "csi", rest, True)
    if scheme == "v4l2":
        if not rest.startswith("/dev/"):
            raise UserError("v4l2://%s: expected a device path, e.g. v4l2:///dev/video0" % rest)
        return SourceSpec(text, "v4l2", rest, True)
    if scheme in ("rtsp", "rtsps"):
        return SourceSpec(text, "rtsp", text, True)
    if scheme == "file":
        return _file_spec(text, rest)
    if sep:
        raise UserError("unknown source scheme %s://; expected csi://, v4l2://, rtsp://, file://, a path, a camera index "
                        "or a GStreamer pipeline" % scheme)
    if text.isdigit():
        return SourceSpec(text, "index", text, True)
    if "!" in text:
        return SourceSpec(text, "gstreamer", text, True)
    return _file_spec(text, text)


def _file_spec(uri: str, path: str) -> SourceSpec:
    if os.path.isdir(path):
        return SourceSpec(uri, "folder", path, False)
    if not os.path.isfile(path):
        raise UserError("source not found: %s (expected a video file, an image folder, an image, or csi://, v4l2://, "
                        "rtsp://, a camera index)" % path)
    kind = "image" if path.lower().endswith(IMAGE_EXTENSIONS) else "file"
    return SourceSpec(uri, kind, path, False)


def _gst_quote(value: str) -> str:
    """A property value for gst_parse_launch: double-quoted, backslash and quote escaped."""
    return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')


def gstreamer_pipeline(spec: SourceSpec, options: SourceOptions = SourceOptions()) -> Optional[str]:
    """The GStreamer pipeline (OpenCV's CAP_GSTREAMER syntax) for ``spec``, or None where OpenCV
    opens it directly (camera index, image folder, image)."""
    jetson = _jetson(options)
    caps = "width=%d,height=%d,framerate=%d/1" % (options.width, options.height, options.fps)
    if spec.kind == "csi":
        return ("nvarguscamerasrc sensor-id=%d ! video/x-raw(memory:NVMM),%s,format=NV12 ! nvvidconv flip-method=%d ! "
                "video/x-raw,format=BGRx ! %s ! %s" % (int(spec.location), caps, options.flip, TO_BGR, APPSINK))
    if spec.kind == "v4l2":
        return "v4l2src device=%s ! video/x-raw,%s ! %s ! %s" % (_gst_quote(spec.location), caps, TO_BGR, APPSINK)
    if spec.kind == "rtsp":
        if options.codec not in CODECS:
            raise UserError("codec %r: expected one of %s" % (options.codec, ", ".join(CODECS)))
        depay = "rtp%sdepay ! %sparse" % (options.codec, options.codec)
        decode = ("nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx" if jetson else "avdec_%s" % options.codec)
        return ("rtspsrc location=%s latency=%d drop-on-latency=true ! %s ! %s ! %s ! %s"
                % (_gst_quote(spec.location), options.latency_ms, depay, decode, TO_BGR, APPSINK))
    if spec.kind == "file":
        return "filesrc location=%s ! decodebin ! %s ! %s" % (_gst_quote(spec.location), TO_BGR, APPSINK)
    if spec.kind == "gstreamer":
        return spec.location
    return None


def describe_pipeline(spec: SourceSpec, options: SourceOptions = SourceOptions()) -> str:
    """What ``--print-pipeline`` shows: how the source is opened, and a gst-launch-1.0 line for it."""
    pipeline = gstreamer_pipeline(spec, options)
    if pipeline is None:
        return "%s (%s): opened by OpenCV directly, no GStreamer pipeline" % (spec.uri, spec.kind)
    head, _, last = pipeline.rpartition("!")
    launch = head.strip() + " ! fakesink sync=false" if head and last.strip().startswith("appsink") else pipeline
    words = ["gst-launch-1.0", "-v"] + _gst_words(launch)
    how = {"file": "opened by OpenCV (FFmpeg) unless it has GStreamer"}.get(spec.kind, "opened with OpenCV's GStreamer "
                                                                                     "backend")
    shell = " ".join(w if w == "!" else shlex.quote(w) for w in words)
    return "%s (%s), %s:\n  %s\nto debug it by hand:\n  %s" % (spec.uri, spec.kind, how, pipeline, shell)


def _gst_words(pipeline: str) -> List[str]:
    """Split a pipeline into gst-launch arguments at spaces outside double quotes (a quoted property
    value with spaces stays one argument, quotes included, as gst-launch's parser wants it)."""
    words, word, quoted, escaped = [], "", False, False
    for ch in pipeline:
        if escaped:
            word, escaped = word + ch, False
        elif ch == "\\" and quoted:
            word, escaped = word + ch, True
        elif ch == '"':
            word, quoted = word + ch, not quoted
        elif ch.isspace() and not quoted:
            if word:
                words.append(word)
            word = ""
        else:
            word += ch
    return words + ([word] if word else [])


def _jetson(options: SourceOptions) -> bool:
    if options.jetson is not None:
        return options.jetson
    from inception_deploy.engines.host import is_jetson
    return is_jetson()


# -- opening -------------------------------------------------------------------------------------------
class Source:
    """A frame source: ``read()`` -> HxWx3 uint8 BGR frame, or None at the end; ``close()``."""

    spec: SourceSpec

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class VideoCaptureSource(Source):
    """cv2.VideoCapture on a camera index, a file, an RTSP URL or a GStreamer pipeline."""

    def __init__(self, spec: SourceSpec, capture: Any, loop: bool = False) -> None:
        self.spec, self.capture, self.loop = spec, capture, loop

    def read(self) -> Optional[np.ndarray]:
        ok, frame = self.capture.read()
        if (not ok or frame is None) and self.loop and not self.spec.live:
            import cv2
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self.capture.read()
        return frame if ok and frame is not None else None

    def close(self) -> None:
        self.capture.release()


class ImageFolderSource(Source):
    """The images of a folder (sorted by name) or one image, decoded by OpenCV; unreadable files are
    skipped and counted (``skipped``)."""

    def __init__(self, spec: SourceSpec, loop: bool = False) -> None:
        self.spec, self.loop = spec, loop
        if spec.kind == "image":
            self.paths = [spec.location]
        else:
            self.paths = [os.path.join(spec.location, n) for n in sorted(os.listdir(spec.location))
                          if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
        if not self.paths:
            raise UserError("no images (%s) in %s" % (", ".join(IMAGE_EXTENSIONS), spec.location))
        self.position = 0
        self.skipped: List[str] = []

    def read(self) -> Optional[np.ndarray]:
        import cv2

        for _ in range(len(self.paths)):
            if self.position >= len(self.paths):
                if not self.loop:
                    return None
                self.position = 0
            path = self.paths[self.position]
            self.position += 1
            frame = cv2.imread(path, cv2.IMREAD_COLOR)
            if frame is not None:
                return frame
            if path not in self.skipped:
                self.skipped.append(path)
        return None


def open_source(spec: SourceSpec, options: SourceOptions = SourceOptions()) -> Source:
    """An open :class:`Source`, or UserError / Unsupported saying why not."""
    import cv2

    if spec.kind in ("folder", "image"):
        return ImageFolderSource(spec, options.loop)
    gstreamer = _has_backend(cv2, cv2.CAP_GSTREAMER, "GStreamer")
    if spec.kind == "index":
        capture = cv2.VideoCapture(int(spec.location))
    elif spec.kind == "file":
        capture = cv2.VideoCapture(spec.location)
    elif spec.kind == "v4l2" and not gstreamer:
        capture = cv2.VideoCapture(spec.location, cv2.CAP_V4L2)
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, options.width)
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, options.height)
    elif spec.kind == "rtsp" and not gstreamer:
        if not _has_backend(cv2, cv2.CAP_FFMPEG, "FFMPEG"):
            raise Unsupported("this OpenCV (%s) has neither GStreamer nor FFmpeg, needed for %s" % (cv2.__version__, spec.uri))
        capture = cv2.VideoCapture(spec.location, cv2.CAP_FFMPEG)
    else:
        if not gstreamer:
            raise Unsupported("this OpenCV (%s) has no GStreamer support, needed for a %s source; use JetPack's OpenCV "
                              "or one built with -DWITH_GSTREAMER=ON (see the pipeline with --print-pipeline)"
                              % (cv2.__version__, spec.kind))
        capture = cv2.VideoCapture(gstreamer_pipeline(spec, options), cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        raise UserError("cannot open %s source %s (camera busy or absent, unreachable URL, unsupported codec?)"
                        % (spec.kind, spec.uri))
    return VideoCaptureSource(spec, capture, options.loop)


def _has_backend(cv2: Any, backend: int, name: str) -> bool:
    """Whether this OpenCV build has a video I/O backend (registry first, build information else)."""
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

