"""A deploy bundle for a target this machine cannot build: everything to build and verify on the device.

TensorRT cannot cross-build, and no machine here has a TensorRT that builds for a Jetson or a
datacenter GPU. So ``<out>/bundle/<target>/`` gets:

- ``model/``: the ONNX files the target builds from (FP16, Q/DQ INT8, or FP32 + calibration cache
  for implicit INT8 and DLA INT8), their manifests;
- ``python/``: only the device-side modules, found by reading imports from their entry points: the
  builder (standard library + TensorRT), the verification runner (numpy + Pillow + TensorRT), and
  the target resolved to JSON (no TOML reader needed on the device);
- ``eval/``: class-balanced labeled images, their manifest and the host's FP32 logits for them;
- ``build_on_device.sh``, ``verify_on_device.sh``, ``trtexec_commands.sh`` (generated from the
  builder's own settings), ``deepstream/`` (nvinfer config for the softmax engine, labels,
  deepstream-app config, gst-launch script), ``triton/`` (datacenter targets), ``README.md``;
- ``SHA256SUMS`` with a ``bundle`` manifest.

The folder appears complete or not at all. Host side (the files it writes are for the device).
"""
import ast
import os
import shutil
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set

from inception_deploy.engines import bundle_readme, deepstream
from inception_deploy.engines import deploy_files as files
from inception_deploy.engines import onnx_info, trtexec
from inception_deploy.engines.deploy_files import BundleText
from inception_deploy.engines.inputs import BuildInputs, CalibrationCache, locate
from inception_deploy.engines.targets import Target, write_target_json
from inception_deploy.pipeline import atomic
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.hashing import file_sha256

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT_PACKAGES = ("engines", "pipeline", "runtime", "benchmarks")
NAMESPACE = "inception_deploy"       # the import namespace; inception_deploy/__init__.py maps it onto the folders
SUMS = "SHA256SUMS"
# What the device runs: the builder (standard library + TensorRT) ...
BUILDER_ROOTS = ("engines/__main__.py", "engines/cli.py", "engines/builder.py", "engines/host.py",
                 "engines/targets.py", "engines/trt_api.py", "engines/compat.py")
# ... and the verification runner and camera runtime (numpy + Pillow + TensorRT).
VERIFY_ROOTS = ("benchmarks/device_verify.py", "benchmarks/report.py", "benchmarks/plots.py",
                "runtime/__init__.py", "runtime/backends/tensorrt.py", "runtime/backends/onnxruntime.py")


# Data files the device modules read (report.html's template, used where the device has jinja2).
DEVICE_DATA = ("benchmarks/templates/report.html.j2",)


@dataclass
class EvalOptions:
    """The verification set to ship: ``count`` class-balanced images of ``images`` (seed ``seed``)."""

    images: Optional[str]
    count: int = 1000
    seed: int = 0
    deepstream_check: bool = True


@dataclass
class BundleResult:
    path: str
    manifest: mf.Manifest
    files: List[str]
    precisions: Dict[str, str]
    notes: List[str] = field(default_factory=list)
    bytes: int = 0


def _top_level_imports(path: str) -> Iterable[str]:
    """Module names imported at module level (function-level imports are optional paths)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for a in node.names:
                yield "%s.%s" % (node.module, a.name)


def device_modules(roots: Iterable[str] = BUILDER_ROOTS + VERIFY_ROOTS, repo_root: str = REPO_ROOT) -> List[str]:
    """The ``.py`` files reachable from ``roots`` through module-level imports of the project's own
    packages, with their packages' ``__init__.py`` and the namespace's (relative paths: the bundle's
    ``python/`` mirrors the repository). Read from the import statements, so a new import is picked up
    without a list to maintain; nothing else of the tree ships."""
    needed: Set[str] = set()
    todo = list(roots) + ([NAMESPACE + "/__init__.py"] if roots else [])
    while todo:
        rel = todo.pop()
        if rel in needed:
            continue
        needed.add(rel)
        parent = os.path.join(os.path.dirname(rel), "__init__.py")
        if os.path.isfile(os.path.join(repo_root, parent)):
            todo.append(parent)
        for name in _top_level_imports(os.path.join(repo_root, rel)):
            if not name.startswith(NAMESPACE + "."):
                continue
            name = name[len(NAMESPACE) + 1:]
            if name.split(".")[0] not in ROOT_PACKAGES:
                continue
            for candidate in (name.replace(".", "/") + ".py", name.replace(".", "/") + "/__init__.py"):
                if os.path.isfile(os.path.join(repo_root, candidate)):
                    todo.append(candidate)
    return sorted(needed)


def _copy_artifact(src: str, dest_dir: str) -> str:
    name = os.path.basename(src)
    shutil.copy2(src, os.path.join(dest_dir, name))
    for extra in (mf.sidecar(src), src + ".data"):  # its manifest; ONNX external weights (dynamo exporter)
        if os.path.isfile(extra):
            shutil.copy2(extra, os.path.join(dest_dir, os.path.basename(extra)))
    return name


def _select(onnx_dir: str, target: Target, precision: str, calib_cache: Optional[str], dla_core: int,
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
            inputs = locate(onnx_dir, target, p, calib_cache, dla_core=dla_core)
            target.check_opset(onnx_info.default_opset(inputs.onnx_path), os.path.basename(inputs.onnx_path))
        except UserError as e:
            if p == precision:
                raise
            notes.append("%s left out: %s" % (p, e))
            continue
        chosen[p] = inputs
    if "fp32" not in chosen and "model.onnx" in {os.path.basename(i.onnx_path) for i in chosen.values()}:
        chosen["fp32"] = locate(onnx_dir, target, "fp32", calib_cache)   # its ONNX ships anyway: advertise it
    return chosen


def _stage_models(tmp: str, chosen: Dict[str, BuildInputs]) -> Dict[str, object]:
    """Copy each ONNX once (+ the calibration cache) into ``model/``; precision -> file name."""
    built_from: Dict[str, str] = {}
    calib: Optional[CalibrationCache] = None
    for p, inputs in chosen.items():
        name = os.path.basename(inputs.onnx_path)
        if name not in built_from.values():
            _copy_artifact(inputs.onnx_path, os.path.join(tmp, "model"))
        built_from[p] = name
        calib = calib or inputs.calibration
    if calib is not None:
        _copy_artifact(calib.path, os.path.join(tmp, "model"))
    return {"built_from": built_from, "calibration": calib}


def _stage_python(tmp: str, target: Target) -> None:
    for rel in device_modules() + list(DEVICE_DATA):
        dest = os.path.join(tmp, "python", rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copy2(os.path.join(REPO_ROOT, rel), dest)
    targets_dest = os.path.join(tmp, "python", "engines", "targets")
    os.makedirs(targets_dest, exist_ok=True)
    write_target_json(target, targets_dest)


def _write(root: str, rel: str, text: str, executable: bool = False) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    if executable:
        os.chmod(path, 0o755)


def _trtexec_lines(b: BundleText, chw: List[int], calib_rel: Optional[str]) -> Dict[str, str]:
    io = b.manifest.io or {}
    input_name = (io.get("input") or {}).get("name", "input")
    return {p: trtexec.render(trtexec.trtexec_args(b.target, p, "model/" + name,
                                                   files.engine_relpath(b.target, b.model_name, p, b.dla_core),
                                                   input_name, chw, calib_rel, b.dla_core))
            for p, name in b.precisions.items()}


def _write_texts(tmp: str, b: BundleText) -> None:
    _write(tmp, "trtexec_commands.sh", files.trtexec_script(b), executable=True)
    _write(tmp, "build_on_device.sh", files.build_script(b), executable=True)
    if b.eval_set is not None:
        _write(tmp, "verify_on_device.sh", files.verify_script(b), executable=True)
    _write(tmp, "deepstream/" + deepstream.CONFIG, deepstream.nvinfer_config(b, b.default_precision))
    _write(tmp, "deepstream/labels.txt", files.labels_line(b.manifest))
    _write(tmp, "deepstream/" + deepstream.APP_CONFIG, deepstream.app_config(b))
    _write(tmp, "deepstream/" + deepstream.GST_SCRIPT, deepstream.gst_launch_script(b), executable=True)
    if b.target.platform == "datacenter":
        folder = "triton/" + deepstream.triton_name(b.model_name)
        _write(tmp, folder + "/config.pbtxt", deepstream.triton_config(b))
        _write(tmp, folder + "/labels.txt", deepstream.triton_labels(b.manifest))
    _write(tmp, "README.md", bundle_readme.readme(b))


def _checksums(tmp: str) -> List[str]:
    sums = []
    for dirpath, _, names in os.walk(tmp):
        for n in sorted(names):
            full = os.path.join(dirpath, n)
            sums.append("%s  %s" % (file_sha256(full), files.relpath(full, tmp)))
    sums.sort(key=lambda line: line.split("  ", 1)[1])
    _write(tmp, SUMS, "\n".join(sums) + "\n")
    return sums


def write_bundle(onnx_dir: str, target: Target, out_root: str, precision: str, reason: str,
                 calib_cache: Optional[str] = None, dla_core: int = -1,
                 eval_options: Optional[EvalOptions] = None) -> BundleResult:
    """Write ``<out_root>/bundle/<target>/`` (replacing an earlier one only when complete):
    select the inputs, then stage models, python/, the verification set, the texts, the checksums
    and the manifest in a temp folder renamed into place whole."""
    target.check_precision(precision, dla_core)
    notes: List[str] = []
    chosen = _select(onnx_dir, target, precision, calib_cache, dla_core, notes)
    bundle_dir = os.path.join(out_root, "bundle", target.name)
    if target.is_jetson and target.max_opset > 17:
        notes.append("needs %s; JetPack 5.x / 6.0 (TensorRT 8.5 / 8.6) read ONNX opset <= 17 only: use "
                     "jetson-orin-jp5 there" % target.jetpack)
    with atomic.atomic_path(bundle_dir) as tmp:
        os.remove(tmp)
        os.makedirs(os.path.join(tmp, "model"))
        staged = _stage_models(tmp, chosen)
        built_from = staged["built_from"]          # type: Dict[str, str]  # type: ignore[assignment]
        calib = staged["calibration"]              # type: Optional[CalibrationCache]  # type: ignore[assignment]
        _stage_python(tmp, target)
        text = BundleText(target=target, manifest=chosen[precision].manifest, reason=reason, precisions=built_from,
                          default_precision=precision, dla_core=dla_core, notes=notes)
        if eval_options is not None and eval_options.images:
            _stage_eval_set(tmp, text, chosen, eval_options)
        chw = [3] + [int(v) for v in text.manifest.preprocessing["input_size"]]
        text.commands = _trtexec_lines(text, chw, "model/%s" % os.path.basename(calib.path) if calib else None)
        _write_texts(tmp, text)
        sums = _checksums(tmp)
        manifest = mf.derive(text.manifest, os.path.join(tmp, "model", built_from[precision]), "bundle",
                             _stage_record(text, calib, sums, tmp), artifact_path=os.path.join(tmp, SUMS))
        mf.write(manifest, os.path.join(tmp, SUMS))
    names = [line.split("  ", 1)[1] for line in sums]
    return BundleResult(path=bundle_dir, manifest=manifest, files=names, precisions=built_from, notes=notes,
                        bytes=sum(os.path.getsize(os.path.join(bundle_dir, n)) for n in names))


def _stage_eval_set(tmp: str, text: BundleText, chosen: Dict[str, BuildInputs], options: EvalOptions) -> None:
    """``eval/``: the verification images and the FP32 logits the host computes for them, from the
    FP32 model (bundled, or the parent the requested ONNX was made from); a note where it is missing."""
    from inception_deploy.engines.eval_set import write_eval_set

    first = chosen[text.default_precision]
    fp32 = chosen.get("fp32")
    source = fp32.onnx_path if fp32 else (first.onnx_path if first.manifest.kind == "onnx" else
                                          mf.parent_path(first.manifest, first.onnx_path))
    if source is None:
        text.notes.append("no verification set: the FP32 model %s was made from is not beside it"
                          % os.path.basename(first.onnx_path))
        return
    result = write_eval_set(tmp, source, mf.read(source, expect_kind="onnx"), options.images, options.count,
                            options.seed, options.deepstream_check)
    text.eval_set, text.deepstream = result.record, result.nvinfer


def _stage_record(b: BundleText, calib: Optional[CalibrationCache], sums: List[str], tmp: str) -> Dict[str, object]:
    t = b.target
    implicit = any(p == "int8" and t.int8_mode_for(b.dla_core) == "implicit" for p in b.precisions)
    return {
        "summary": "%s deploy bundle (%s from %s), build on the device: ./build_on_device.sh; needs %s" % (
            t.name, "/".join(b.precisions), ", ".join(sorted(set(b.precisions.values()))), t.jetpack or t.tensorrt),
        "target": t.name, "platform": t.platform, "why_not_built_here": b.reason,
        "precisions": b.precisions, "default_precision": b.default_precision, "int8_mode": t.int8_mode_for(b.dla_core),
        "dla_core": b.dla_core, "max_opset": t.max_opset,
        "opsets": {name: onnx_info.default_opset(os.path.join(tmp, "model", name))
                   for name in sorted(set(b.precisions.values()))},
        "requires": t.jetpack or t.tensorrt,
        "calibration": calib.record(used=implicit) if calib else None,
        "eval_set": b.eval_set, "deepstream_agreement": b.deepstream,
        "files": len(sums), "notes": b.notes,
    }
