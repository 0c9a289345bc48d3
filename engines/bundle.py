"""A deploy bundle for a target this machine cannot build: everything to build on the device.

TensorRT cannot cross-build, and no machine here has a TensorRT that builds for a Jetson or a
datacenter GPU. So ``<out>/bundle/<target>/`` gets the ONNX files the target builds from (FP16,
Q/DQ INT8, or FP32 + calibration cache for implicit INT8), their manifests, the builder's own
code (``python/``: ``engines`` plus the few ``pipeline`` modules it imports, found by reading the
imports), ``build_on_device.sh``, the equivalent trtexec commands, a DeepStream nvinfer config
with its labels, a README and ``SHA256SUMS`` with a ``bundle`` manifest. The folder appears
complete or not at all. Device-side: stdlib only.
"""
import ast
import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set

from engines import deploy_files as files
from engines import onnx_info
from engines.inputs import BuildInputs, locate
from engines.targets import Target
from pipeline import atomic
from pipeline import manifest as mf
from pipeline.datasets import file_sha256
from pipeline.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT_PACKAGES = ("engines", "pipeline", "calibration")   # calibration: only what engines import (cache.py)
SUMS = "SHA256SUMS"


@dataclass
class BundleResult:
    path: str
    manifest: mf.Manifest
    files: List[str]
    precisions: Dict[str, str]
    notes: List[str] = field(default_factory=list)
    bytes: int = 0


def device_modules(repo_root: str = REPO_ROOT) -> List[str]:
    """The ``.py`` files the on-device builder needs: all of ``engines`` and, transitively, the
    ``pipeline`` modules imported from it (relative paths). Read from the import statements, so a
    new import is picked up without a list to maintain."""
    needed: Set[str] = set()
    todo = [os.path.join("engines", n) for n in sorted(os.listdir(os.path.join(repo_root, "engines")))
            if n.endswith(".py")]
    while todo:
        rel = todo.pop()
        if rel in needed:
            continue
        needed.add(rel)
        with open(os.path.join(repo_root, rel), encoding="utf-8") as f:
            tree = ast.parse(f.read(), rel)
        for node in ast.walk(tree):
            names: List[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + ["%s.%s" % (node.module, a.name) for a in node.names]
            for name in names:
                if name.split(".")[0] not in ROOT_PACKAGES:
                    continue
                for candidate in (name.replace(".", "/") + ".py", name.replace(".", "/") + "/__init__.py"):
                    if os.path.isfile(os.path.join(repo_root, candidate)):
                        todo.append(candidate)
                        parent = os.path.join(os.path.dirname(candidate), "__init__.py")
                        if os.path.isfile(os.path.join(repo_root, parent)):
                            todo.append(parent)
    return sorted(needed)


def _copy_artifact(src: str, dest_dir: str, copied: List[str]) -> str:
    name = os.path.basename(src)
    shutil.copy2(src, os.path.join(dest_dir, name))
    copied.append(name)
    side = mf.sidecar(src)
    if os.path.isfile(side):
        shutil.copy2(side, os.path.join(dest_dir, os.path.basename(side)))
    data = src + ".data"  # ONNX external weights (dynamo exporter)
    if os.path.isfile(data):
        shutil.copy2(data, os.path.join(dest_dir, os.path.basename(data)))
    return name


def _select(onnx_dir: str, target: Target, precision: str, calib_cache: Optional[str],
            notes: List[str]) -> Dict[str, BuildInputs]:
    """The requested precision (must exist and fit the opset ceiling) plus INT8 and FP16 where the
    target builds them and their artifacts exist and fit (FP32 only when asked for: it is the
    largest file); what is left out is said in ``notes``. Given one ONNX file instead of a folder,
    exactly that file for the requested precision. Every input passes the lineage check
    (:func:`engines.inputs.locate`) before anything is copied."""
    chosen: Dict[str, BuildInputs] = {}
    order = [precision] + [p for p in ("int8", "fp16") if p != precision and p in target.precisions]
    if not os.path.isdir(onnx_dir):
        order = [precision]
        notes.append("only %s: the bundle holds exactly the file given with --onnx" % os.path.basename(onnx_dir))
    for p in order:
        try:
            inputs = locate(onnx_dir, target, p, calib_cache)
            target.check_opset(onnx_info.default_opset(inputs.onnx_path), os.path.basename(inputs.onnx_path))
        except UserError as e:
            if p == precision:
                raise
            notes.append("%s left out: %s" % (p, e))
            continue
        chosen[p] = inputs
    return chosen


def write_bundle(onnx_dir: str, target: Target, out_root: str, precision: str, reason: str,
                 calib_cache: Optional[str] = None, dla_core: int = -1) -> BundleResult:
    """Write ``<out_root>/bundle/<target>/`` (replacing an earlier one only when complete)."""
    target.check_precision(precision, dla_core)
    notes: List[str] = []
    chosen = _select(onnx_dir, target, precision, calib_cache, notes)
    first = chosen[precision]
    m = first.manifest
    bundle_dir = os.path.join(out_root, "bundle", target.name)
    input_io = (m.io or {}).get("input") or {}
    input_name = input_io.get("name", "input")
    chw = [3] + [int(v) for v in m.preprocessing["input_size"]]
    if target.is_jetson:
        notes.append("needs %s; JetPack 5.x / 6.0 (TensorRT 8.5 / 8.6) read ONNX opset <= 17 only: use "
                     "jetson-orin-jp5 there" % target.jetpack if target.max_opset > 17 else "needs %s" % target.jetpack)
    written: List[str] = []
    with atomic.atomic_path(bundle_dir) as tmp:
        os.remove(tmp)
        os.makedirs(os.path.join(tmp, "model"))
        os.makedirs(os.path.join(tmp, "deepstream"))
        built_from: Dict[str, str] = {}
        calib = None
        for p, inputs in chosen.items():
            name = os.path.basename(inputs.onnx_path)
            if name not in built_from.values():
                _copy_artifact(inputs.onnx_path, os.path.join(tmp, "model"), written)
            built_from[p] = name
            if inputs.calibration is not None and calib is None:
                calib = inputs.calibration
        if calib is not None:
            _copy_artifact(calib.path, os.path.join(tmp, "model"), written)
        for rel in device_modules():
            dest = os.path.join(tmp, "python", rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(os.path.join(REPO_ROOT, rel), dest)
        targets_dest = os.path.join(tmp, "python", "engines", "targets")
        os.makedirs(targets_dest, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(REPO_ROOT, "engines", "targets"))):
            if name.endswith(".toml"):
                shutil.copy2(os.path.join(REPO_ROOT, "engines", "targets", name), os.path.join(targets_dest, name))

        commands: Dict[str, str] = {}
        engines = {p: files.engine_relpath(target, m.model.name, p) for p in built_from}
        calib_rel = "model/%s" % os.path.basename(calib.path) if calib else None
        for p, name in built_from.items():
            implicit = p == "int8" and target.int8_mode == "implicit"
            commands[p] = files.trtexec_command(target, p, "model/" + name, engines[p], input_name, chw,
                                                calib_rel if implicit else None, dla_core)
        _write(tmp, "trtexec_commands.sh", files.trtexec_script(target, commands, engines), executable=True)
        _write(tmp, "build_on_device.sh", files.build_script(target, precision), executable=True)
        ds_precision = precision
        implicit = ds_precision == "int8" and target.int8_mode == "implicit"
        _write(tmp, "deepstream/config_infer_primary_classifier.txt", files.nvinfer_config(
            target, m, ds_precision, "../model/" + built_from[ds_precision],
            "../" + files.engine_relpath(target, m.model.name, ds_precision),
            ("../" + calib_rel) if (implicit and calib_rel) else None, dla_core))
        _write(tmp, "deepstream/labels.txt", files.labels_line(m))
        _write(tmp, "README.md", files.readme(target, m, reason, built_from, notes, commands, target.name))

        sums = []
        total = 0
        for dirpath, _, names in os.walk(tmp):
            for n in sorted(names):
                full = os.path.join(dirpath, n)
                rel = files.relpath(full, tmp)
                sums.append("%s  %s" % (file_sha256(full), rel))
                total += os.path.getsize(full)
        sums.sort(key=lambda line: line.split("  ", 1)[1])
        _write(tmp, SUMS, "\n".join(sums) + "\n")
        stage = {
            "summary": "%s deploy bundle (%s from %s), build on the device: ./build_on_device.sh; needs %s" % (
                target.name, "/".join(built_from), ", ".join(sorted(set(built_from.values()))),
                target.jetpack or target.tensorrt),
            "target": target.name, "platform": target.platform, "why_not_built_here": reason,
            "precisions": built_from, "default_precision": precision, "int8_mode": target.int8_mode,
            "max_opset": target.max_opset, "opsets": {name: onnx_info.default_opset(os.path.join(tmp, "model", name))
                                                      for name in sorted(set(built_from.values()))},
            "requires": target.jetpack or target.tensorrt,
            "calibration": calib.record(used=target.int8_mode == "implicit") if calib else None,
            "files": len(sums), "bytes": total, "notes": notes,
        }
        manifest = mf.derive(m, first.onnx_path, "bundle", stage)
        mf.write(manifest, os.path.join(tmp, SUMS))
    return BundleResult(path=bundle_dir, manifest=manifest, files=[s.split("  ", 1)[1] for s in sums],
                        precisions=built_from, notes=notes, bytes=total)


def _write(root: str, rel: str, text: str, executable: bool = False) -> None:
    path = os.path.join(root, rel)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    if executable:
        os.chmod(path, 0o755)
