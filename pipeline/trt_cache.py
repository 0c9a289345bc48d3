"""The legacy TensorRT INT8 calibration cache: read and write (device-side).

TensorRT <= 10's implicit INT8 path (``IInt8EntropyCalibrator2.read_calibration_cache``,
``trtexec --int8 --calib=FILE``) and modelopt's cache import read this text format::

    TRT-<version>-EntropyCalibration2
    <tensor name>: <8 hex digits: the float32 scale, big-endian bits>

A scale is ``amax / 127`` (symmetric INT8). The engine builder reads caches on the Jetson
itself, so this module is stdlib only and Python 3.8 syntax.
"""
import os
import struct
from typing import Dict, Mapping, Tuple

from inception_deploy.pipeline import atomic
from inception_deploy.pipeline.errors import UserError

DEFAULT_VERSION = "100000"              # "TRT-100000-..." as TensorRT 10.0 writes it
CALIBRATOR = "EntropyCalibration2"      # what IInt8EntropyCalibrator2 writes and expects
INT8_MAX = 127.0


def scale_to_hex(scale: float) -> str:
    """A float32 scale as TensorRT writes it: the big-endian IEEE-754 bits in 8 hex digits."""
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return float(struct.unpack(">f", bytes.fromhex(text))[0])


def header_for(version_tag: str) -> str:
    """``"8601"`` -> ``TRT-8601-EntropyCalibration2``; a full ``TRT-...`` header is kept as given."""
    tag = str(version_tag).strip()
    if tag.startswith("TRT-"):
        return tag
    if not tag or "\n" in tag:
        raise UserError(f"calibration cache version tag {version_tag!r} is not usable; expected e.g. "
                        f"'{DEFAULT_VERSION}' or a full 'TRT-8601-{CALIBRATOR}' header")
    return "TRT-%s-%s" % (tag, CALIBRATOR)


def format_cache(scales: Mapping[str, float], version_tag: str = DEFAULT_VERSION) -> str:
    lines = [header_for(version_tag)]
    for name in sorted(scales):
        scale = float(scales[name])
        if "\n" in name or not name:
            raise UserError(f"tensor name {name!r} cannot be written to a calibration cache")
        if not scale > 0.0 or scale != scale or scale == float("inf"):
            raise UserError(f"scale {scale!r} of tensor {name!r} is not a positive finite number; "
                            "recalibrate (an all-zero activation gives no range)")
        lines.append("%s: %s" % (name, scale_to_hex(scale)))
    return "\n".join(lines) + "\n"


def write_cache(path: str, scales: Mapping[str, float], version_tag: str = DEFAULT_VERSION) -> str:
    """Write ``{tensor: scale}`` atomically; returns ``path``."""
    atomic.write_text(path, format_cache(scales, version_tag))
    return path


def parse_cache(text: str, where: str = "calibration cache") -> Tuple[str, Dict[str, float]]:
    """(header, {tensor: scale}) from the text of a cache; malformed lines name their number."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("TRT-"):
        raise UserError(f"{where}: first line {lines[0][:40]!r} is not a 'TRT-<version>-<calibrator>' header; "
                        "is this a TensorRT INT8 calibration cache?" if lines else f"{where} is empty")
    scales: Dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        name, sep, value = line.rpartition(": ")
        try:
            if not sep or len(value.strip()) != 8:
                raise ValueError(value)
            scales[name] = hex_to_scale(value.strip())
        except ValueError:
            raise UserError(f"{where}, line {number}: expected '<tensor>: <8 hex digits>', got {line[:80]!r}") from None
    return lines[0], scales


def read_cache(path: str) -> Dict[str, float]:
    """``{tensor name: scale}`` from a TensorRT calibration cache file."""
    return read_cache_with_header(path)[1]


def read_cache_with_header(path: str) -> Tuple[str, Dict[str, float]]:
    if not os.path.isfile(path):
        raise UserError(f"calibration cache not found: {path} (make one with: inception-deploy calibrate "
                        "--precision int8)")
    with open(path, "r", encoding="ascii", errors="replace") as f:
        return parse_cache(f.read(), where=path)


def amax_to_scale(amax: float) -> float:
    return float(amax) / INT8_MAX
