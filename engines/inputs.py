"""Find what a build needs beside the exported ONNX: the ONNX for the precision, its manifest,
and the TensorRT calibration cache (with its manifest) the calibration stage wrote.

The export stage writes ``model.onnx``; the calibration stage writes ``model.fp16.onnx``,
``model.int8.onnx`` (Q/DQ) and a legacy calibration cache (``TRT-<version>-EntropyCalibration2``
header) in the same folder. Every input passes the lineage check (:mod:`pipeline.lineage`)
before anything is built or bundled: the ONNX matches its manifest and still fits its parent and
its graph, and the calibration cache is the one its INT8 model (or, built the implicit way, its
FP32 model) was calibrated with, parses, and matches its manifest. Device-side: stdlib only.
"""
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from inception_deploy.engines.targets import Target
from inception_deploy.pipeline import lineage
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.hashing import file_sha256
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.frame_io import frame_size_name, variant_path

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


def read_cache(path: str, fp32_sha256: Optional[str] = None, require_manifest: bool = False) -> CalibrationCache:
    """A calibration cache that parses, matches its manifest and (given ``fp32_sha256``) was made from that ONNX."""
    checked = lineage.check_cache(path, fp32_sha256=fp32_sha256, require_manifest=require_manifest)
    return CalibrationCache(path=path, sha256=checked.sha256, manifest_path=checked.manifest_path,
                            manifest_sha256=checked.manifest_sha256)


def find_calibration_cache(folder: str) -> Optional[str]:
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
    return found[0] if found else None


def locate(onnx: str, target: Target, precision: str, calib_cache: Optional[str] = None,
           dla_core: int = -1, frame_input: Optional[Tuple[int, int]] = None) -> BuildInputs:
    """The ONNX (+ manifest, + calibration cache) that ``target`` builds ``precision`` from
    (on its DLA core ``dla_core`` when >= 0: the DLA takes INT8 the target's ``[dla] int8_mode`` way).

    ``onnx`` is the folder of the exported ``model.onnx`` or one ONNX file whose manifest kind
    must fit the precision. ``frame_input`` (H, W) picks the variant that takes camera frames.
    """
    implicit = precision == "int8" and target.int8_mode_for(dla_core) == "implicit"
    if os.path.isdir(onnx):
        folder = onnx
        name = target.onnx_for(precision, dla_core)
        name = variant_path(name, frame_input) if frame_input else name
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
    m = lineage.check(path, expect_kind="onnx*")
    wanted = "onnx" if (precision == "fp32" or implicit) else {"fp16": "onnx-fp16", "int8": "onnx-int8"}[precision]
    if m.kind != wanted and dla_core >= 0 and m.kind == "onnx-int8":
        raise UserError("%s is a Q/DQ INT8 ONNX, but %s's TensorRT takes INT8 for the DLA from calibration scales, not "
                        "from Q/DQ nodes (target [dla] int8_mode = %r, after NVIDIA's DLA FAQ and QDQ translator); "
                        "build DLA INT8 from model.onnx + the calibration cache (pass the folder, or --onnx "
                        "model.onnx), or the Q/DQ ONNX on the GPU (--dla-core -1)"
                        % (path, target.name, target.dla.int8_mode))
    if m.kind != wanted:
        raise UserError("%s is a %s artifact, but %s %s builds from a %s one (%s); pass the matching file or the "
                        "folder holding model.onnx / model.fp16.onnx / model.int8.onnx"
                        % (path, m.kind, target.name, precision, wanted,
                           {"onnx": "model.onnx", "onnx-fp16": "model.fp16.onnx", "onnx-int8": "model.int8.onnx"}[wanted]))
    return BuildInputs(onnx_path=path, manifest=m, manifest_sha256=file_sha256(mf.sidecar(path)), precision=precision,
                       calibration=_calibration(path, m, folder, target, precision, implicit, calib_cache))


def _calibration(path: str, m: mf.Manifest, folder: str, target: Target, precision: str, implicit: bool,
                 calib_cache: Optional[str]) -> Optional[CalibrationCache]:
    """The calibration cache that belongs to this build, checked, or None.

    Implicit INT8 uses the cache calibrated on this FP32 ONNX (``--calib-cache``, else the one
    beside it, which must have its calibration manifest). A Q/DQ INT8 ONNX carries the cache its
    manifest cites as provenance (a named ``--calib-cache`` must be that one). Other builds have none."""
    if implicit:
        found = calib_cache or find_calibration_cache(folder)
        if found is None:
            raise UserError("%s int8 builds the implicit way (FP32 ONNX + TensorRT calibration cache) but no "
                            "calibration cache is in %s; run make calibrate first, or name one with --calib-cache"
                            % (target.name, folder))
        return read_cache(found, fp32_sha256=m.artifact.get("sha256"), require_manifest=not calib_cache)
    if m.kind != "onnx-int8":
        return None
    linked = lineage.linked_calibration(path, m)
    if calib_cache:
        named = read_cache(calib_cache, fp32_sha256=(m.parent or {}).get("sha256"))
        if linked is None or named.sha256 != linked.sha256:
            raise UserError("--calib-cache %s is not the calibration cache %s was made with%s; leave --calib-cache "
                            "out (the Q/DQ model carries its own scales)"
                            % (calib_cache, path, " (%s)" % linked.path if linked else ""))
        return named
    if linked is None:
        return None
    return CalibrationCache(path=linked.path, sha256=linked.sha256, manifest_path=linked.manifest_path,
                            manifest_sha256=linked.manifest_sha256)
