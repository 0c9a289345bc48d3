"""Frame-input models' names and manifest record (standard library: the device builder reads them).

A model whose graph holds its preprocessing (:mod:`pipeline.frame_graph`) takes uint8 NHWC BGR
frames of one size; its files, engine folders and manifests name that size ``WxH``.
"""
from typing import Any, Dict, Optional, Tuple

from inception_deploy.pipeline.errors import UserError

GRAPH_PREFIX = "frame_preprocess/"   # names of the nodes pipeline.frame_graph adds (and engine layers keep)


def parse_frame_size(text: str) -> Tuple[int, int]:
    """``"1920x1080"`` (width x height, as cameras are named) -> (1080, 1920) = (H, W)."""
    parts = str(text).lower().replace(" ", "").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        width = height = 0
    if width < 1 or height < 1 or width > 16384 or height > 16384:
        raise UserError("frame size %r: expected WIDTHxHEIGHT in pixels, e.g. 1920x1080" % (text,))
    return height, width


def frame_size_name(size: Tuple[int, int]) -> str:
    """(H, W) -> ``"WxH"``, the name used in file names and manifests."""
    return "%dx%d" % (size[1], size[0])


def variant_path(onnx_path: str, frame_size: Tuple[int, int]) -> str:
    """``.../model.int8.onnx`` -> ``.../model.int8.frame-1920x1080.onnx``: where export/calibrate write a
    frame-input variant and where build looks for it (one name for both sides)."""
    stem = onnx_path[:-5] if onnx_path.endswith(".onnx") else onnx_path
    return "%s.frame-%s.onnx" % (stem, frame_size_name(frame_size))


def frame_input_size(io: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    """(H, W) when a manifest's ``io`` says the model takes camera frames (uint8 NHWC, the
    preprocessing in its graph: :mod:`pipeline.frame_graph`), else ``None``."""
    record = (io or {}).get("input") or {}
    shape = record.get("shape") or []
    if record.get("layout") != "NHWC" or record.get("dtype") != "uint8" or len(shape) != 4:
        return None
    return int(shape[1]), int(shape[2])
