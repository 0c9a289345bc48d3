"""Find what a build needs beside the exported ONNX: the ONNX for the precision, its manifest,
and the TensorRT calibration cache (with its manifest) the calibration stage wrote.

The export stage writes ``model.onnx``; the calibration stage writes ``model.fp16.onnx``,
``model.int8.onnx`` (Q/DQ) and a legacy calibration cache (``TRT-<version>-EntropyCalibration2``
header) in the same folder. Device-side: stdlib only.
"""
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from engines.targets import Target
from pipeline import manifest as mf
from pipeline.datasets import file_sha256
from pipeline.errors import UserError
from pipeline.frame_plan import frame_size_name

KIND_FOR = {"model.onnx": "onnx", "model.fp16.onnx": "onnx-fp16", "model.int8.onnx": "onnx-int8"}
CACHE_MAGIC = b"TRT-"
_SKIP_SUFFIXES = (".onnx", ".json", ".data", ".engine", ".plan", ".log", ".md", ".txt.json")


@dataclass
class CalibrationCache:
    path: str
    sha256: str
    manifest_path: Optional[str]
    manifest_sha256: Optional[str]

    def record(self, used: bool) -> dict:
        return {"cache": os.path.basename(self.path), "cache_sha256": self.sha256,
                "manifest": os.path.basename(self.manifest_path) if self.manifest_path else None,
                "manifest_sha256": self.manifest_sha256, "used_by_build": used}


@dataclass
class BuildInputs:
    onnx_path: str
    manifest: mf.Manifest
    manifest_sha256: str
    precision: str
    calibration: Optional[CalibrationCache]   # found beside the ONNX (Q/DQ: provenance; implicit: used)


def _is_cache(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(CACHE_MAGIC)) == CACHE_MAGIC
    except OSError:
        return False


def read_cache(path: str) -> CalibrationCache:
    if not os.path.isfile(path):
        raise UserError("calibration cache not found: %s (run make calibrate first)" % path)
    if not _is_cache(path):
        raise UserError("%s is not a TensorRT calibration cache (expected a 'TRT-<version>-EntropyCalibration2' "
                        "first line, as the calibration stage writes)" % path)
    side = mf.sidecar(path)
    has_manifest = os.path.isfile(side)
    return CalibrationCache(path=path, sha256=file_sha256(path), manifest_path=side if has_manifest else None,
                            manifest_sha256=file_sha256(side) if has_manifest else None)


def find_calibration_cache(folder: str) -> Optional[CalibrationCache]:
    """The one calibration cache in ``folder`` (a file starting ``TRT-``), preferring one with a
    ``calibration`` manifest; ``None`` if there is none, a UserError if it is ambiguous."""
    if not os.path.isdir(folder):
        return None
    found = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not name.endswith(_SKIP_SUFFIXES) and not name.startswith(".") and _is_cache(path):
            found.append(path)
    if len(found) > 1:
        with_manifest = [p for p in found if os.path.isfile(mf.sidecar(p))]
        if len(with_manifest) == 1:
            found = with_manifest
        else:
            raise UserError("several calibration caches in %s (%s); name one with --calib-cache"
                            % (folder, ", ".join(os.path.basename(p) for p in found)))
    return read_cache(found[0]) if found else None


def frame_variant_name(name: str, frame_input: Optional[Tuple[int, int]]) -> str:
    """``model.int8.onnx`` -> ``model.int8.frame-1920x1080.onnx`` (pipeline.frame_variant's naming)."""
    if not frame_input:
        return name
    return "%s.frame-%s.onnx" % (name[:-5] if name.endswith(".onnx") else name, frame_size_name(frame_input))


def locate(onnx: str, target: Target, precision: str, calib_cache: Optional[str] = None,
           frame_input: Optional[Tuple[int, int]] = None) -> BuildInputs:
    """The ONNX (+ manifest, + calibration cache) that ``target`` builds ``precision`` from.

    ``onnx`` is the folder of the exported ``model.onnx`` or one ONNX file whose manifest kind
    must fit the precision. ``frame_input`` (H, W) picks the variant that takes camera frames.
    """
    implicit = precision == "int8" and target.int8_mode == "implicit"
    if os.path.isdir(onnx):
        folder = onnx
        name = frame_variant_name(target.onnx_for(precision), frame_input)
        path = os.path.join(folder, name)
        if frame_input and not os.path.isfile(path):
            raise UserError("%s not found in %s: the %s frame-input variant is written by export --frame-input %s "
                            "(then calibrate, for int8/fp16); run those first"
                            % (name, folder, frame_size_name(frame_input), frame_size_name(frame_input)))
        if not os.path.isfile(path):
            stage = "make export" if name == "model.onnx" else "make calibrate"
            what = {"model.onnx": "the exported FP32 ONNX", "model.fp16.onnx": "the FP16 ONNX",
                    "model.int8.onnx": "the Q/DQ INT8 ONNX"}[name]
            raise UserError("%s not found in %s: %s %s builds from %s; run %s first"
                            % (name, folder, target.name, precision, what, stage))
    else:
        path, folder = onnx, os.path.dirname(os.path.abspath(onnx))
        if not os.path.isfile(path):
            raise UserError("ONNX file not found: %s" % path)
    m = mf.read(path, expect_kind="onnx*")
    wanted = "onnx" if (precision == "fp32" or implicit) else {"fp16": "onnx-fp16", "int8": "onnx-int8"}[precision]
    if m.kind != wanted:
        raise UserError("%s is a %s artifact, but %s %s builds from a %s one (%s); pass the matching file or the "
                        "folder holding model.onnx / model.fp16.onnx / model.int8.onnx"
                        % (path, m.kind, target.name, precision, wanted,
                           {"onnx": "model.onnx", "onnx-fp16": "model.fp16.onnx", "onnx-int8": "model.int8.onnx"}[wanted]))
    if calib_cache:
        cache = read_cache(calib_cache)  # type: Optional[CalibrationCache]
    else:
        cache = find_calibration_cache(folder)
    if implicit and cache is None:
        raise UserError("%s int8 builds the implicit way (FP32 ONNX + TensorRT calibration cache) but no calibration "
                        "cache is in %s; run make calibrate first, or name one with --calib-cache" % (target.name, folder))
    return BuildInputs(onnx_path=path, manifest=m, manifest_sha256=file_sha256(mf.sidecar(path)), precision=precision,
                       calibration=cache)
