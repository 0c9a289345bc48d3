"""Device-side code (preprocessing from a manifest, engine building, runtime) must run on a Jetson:
JetPack 5's system Python 3.8, no torch / timm / modelopt."""
import glob
import os
import subprocess
import sys

from inception_deploy.pipeline import paths

FORBIDDEN = ("torch", "timm", "modelopt", "torchvision")
DEVICE_PIPELINE = ["errors", "atomic", "labels", "preprocess", "frame_plan", "frame_io", "datasets", "manifest",
                   "progress", "paths", "summary", "lineage", "publish", "hashing", "trt_cache", "onnx_io", "command",
                   "documents", "metrics", "__init__"]
# Host-side modules that must still import without torch (ONNX Runtime is their only engine).
TORCH_FREE = ["inception_deploy.calibration.evaluate", "inception_deploy.calibration.stats"]


def device_files():
    root = paths.REPO_ROOT
    files = [os.path.join(root, "pipeline", f"{m}.py") for m in DEVICE_PIPELINE]
    files.append(os.path.join(root, "calibration", "cache.py"))
    for pkg in ("runtime", "engines"):
        files += glob.glob(os.path.join(root, pkg, "**", "*.py"), recursive=True)
    from inception_deploy.engines.bundle import device_modules   # everything a deploy bundle ships runs on JetPack 5's Python 3.8
    files += [os.path.join(root, rel) for rel in device_modules()]
    return sorted(set(f for f in files if os.path.isfile(f)))


def test_device_side_is_python_3_8_syntax():
    files = device_files()
    assert len(files) >= len(DEVICE_PIPELINE) + 2
    res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "vermin"), "--no-tips", "--violations", "-t=3.8-", "--eval-annotations",
                          "--backport", "typing", *files], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _import_with_torch_blocked(modules):
    code = (
        "import importlib, importlib.abc, sys\n"
        f"BLOCKED = {FORBIDDEN!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('device side imported ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print('ok', len(sys.modules))\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=paths.REPO_ROOT)


def test_device_side_imports_without_torch_timm_modelopt():
    """Import every device-side module with torch/timm/modelopt made unimportable."""
    modules = []
    for f in device_files():
        rel = os.path.relpath(f, paths.REPO_ROOT)[:-3].replace(os.sep, ".")
        rel = rel if rel.startswith("inception_deploy") else "inception_deploy." + rel   # the install name
        modules.append(rel[: -len(".__init__")] if rel.endswith(".__init__") else rel)
    res = _import_with_torch_blocked(modules)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr[-2000:]


def test_calibration_reference_imports_without_torch():
    """The ONNX Runtime accuracy reference and histogram pass need no torch (pipeline.onnx_io)."""
    res = _import_with_torch_blocked(TORCH_FREE)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr[-2000:]
