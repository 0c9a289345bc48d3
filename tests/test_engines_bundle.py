"""Deploy bundles for targets this machine cannot build (Jetson, datacenter): contents, checksums,
the opset ceiling, atomicity, Jetson detection, and the bundle's own builder running with nothing
but the bundle, numpy and TensorRT(-RTX) on its path (no torch, no project install)."""
import dataclasses
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy
import pytest

from engines import api_surface, builder, bundle, deploy_files, host, trt_api
from engines.targets import resolve_target
from pipeline import manifest as mf
from pipeline import paths
from pipeline.errors import UserError
from pipeline.summary import summarize


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True,
                          cwd=paths.REPO_ROOT)


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory, engines_onnx_dir):
    out = str(tmp_path_factory.mktemp("bundle_out"))
    res = run_cli("build", "--onnx-dir", engines_onnx_dir, "--target", "jetson", "--precision", "int8", "--out", out)
    assert res.returncode == 0, res.stderr
    return out, os.path.join(out, "bundle", "jetson-orin"), res.stdout


def test_jetson_writes_a_bundle_and_says_why(jetson_bundle):
    _, path, stdout = jetson_bundle
    assert "target jetson -> jetson-orin" in stdout
    assert "No jetson-orin engine built here" in stdout and "cannot cross-build" in stdout
    assert "JetPack 6.1" in stdout and "scp -r" in stdout and "build_on_device.sh int8" in stdout
    files = {os.path.relpath(p, path) for p in glob.glob(os.path.join(path, "**"), recursive=True) if os.path.isfile(p)}
    for name in ("model/model.int8.onnx", "model/model.int8.onnx.json", "model/model.fp16.onnx",
                 "model/model.fp16.onnx.json", "model/model.int8.calib.cache", "model/model.int8.calib.cache.json",
                 "build_on_device.sh", "trtexec_commands.sh", "README.md",
                 "deepstream/config_infer_primary_classifier.txt", "deepstream/labels.txt", "SHA256SUMS",
                 "SHA256SUMS.json", "python/engines/builder.py", "python/engines/targets/jetson-orin.toml",
                 "python/pipeline/manifest.py", "python/pipeline/errors.py"):
        assert name in files, name
    assert "model/model.onnx" not in files and "model/model.onnx.json" not in files  # FP32 only when asked for
    assert not any(f.startswith("python/pipeline/models") or f.endswith("export.py") for f in files)
    assert os.access(os.path.join(path, "build_on_device.sh"), os.X_OK)


def test_bundle_checksums_and_manifest(jetson_bundle):
    out, path, _ = jetson_bundle
    lines = open(os.path.join(path, "SHA256SUMS"), encoding="utf-8").read().splitlines()
    assert len(lines) > 20
    for line in lines:
        digest, rel = line.split("  ", 1)
        with open(os.path.join(path, rel), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, rel
    m = mf.read(os.path.join(path, "SHA256SUMS"), expect_kind="bundle")
    s = m.stage
    assert s["target"] == "jetson-orin" and s["precisions"] == {"int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
    assert s["opsets"] == {"model.fp16.onnx": 17, "model.int8.onnx": 19} and s["max_opset"] == 20
    assert "JetPack 6.1" in s["requires"] and "cross-build" in s["why_not_built_here"]
    assert len(m.label_names) == 200
    assert "jetson-orin deploy bundle" in summarize(out)


def test_scripts_and_deepstream_config(jetson_bundle, engines_onnx_dir):
    _, path, _ = jetson_bundle
    for script in ("build_on_device.sh", "trtexec_commands.sh"):
        res = subprocess.run(["bash", "-n", os.path.join(path, script)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    build = open(os.path.join(path, "build_on_device.sh")).read()
    assert "-m engines build" in build and "--target jetson-orin" in build and "--no-bundle" in build
    trtexec = open(os.path.join(path, "trtexec_commands.sh")).read()
    assert "--onnx=model/model.int8.onnx" in trtexec and "--stronglyTyped" in trtexec
    assert "--minShapes=input:1x3x56x56" in trtexec and "--maxShapes=input:4x3x56x56" in trtexec
    config = open(os.path.join(path, "deepstream", "config_infer_primary_classifier.txt")).read()
    pre = mf.read(os.path.join(engines_onnx_dir, "model.onnx")).preprocessing
    assert "network-type=1" in config and "network-mode=1" in config and "infer-dims=3;56;56" in config
    assert "onnx-file=../model/model.int8.onnx" in config and "output-blob-names=logits" in config
    offsets = [float(v) for v in config.split("offsets=")[1].split("\n")[0].split(";")]
    assert offsets == pytest.approx([255 * v for v in pre["mean"]], abs=1e-3)
    labels = open(os.path.join(path, "deepstream", "labels.txt")).read()
    assert labels.count("\n") == 1 and len(labels.strip().split(";")) == 200
    readme = open(os.path.join(path, "README.md")).read()
    assert "JetPack 6.1" in readme and "build_on_device.sh" in readme and "trtexec" in readme


def _isolated_env(tmp_path, with_tensorrt_rtx):
    """A sys.path with only the bundle's python/ folder, numpy and (optionally) tensorrt_rtx."""
    site = tmp_path / "site"
    site.mkdir()
    sp = os.path.dirname(os.path.dirname(numpy.__file__))
    names = ["numpy", "numpy.libs"] + (["tensorrt_rtx", "tensorrt_rtx_bindings", "tensorrt_rtx_libs"]
                                       if with_tensorrt_rtx else [])
    for name in names:
        if os.path.exists(os.path.join(sp, name)):
            os.symlink(os.path.join(sp, name), str(site / name))
    return str(site)


BLOCK = ("import importlib.abc, sys\n"
         "class Block(importlib.abc.MetaPathFinder):\n"
         "    def find_spec(self, name, path=None, target=None):\n"
         "        if name.split('.')[0] in ('torch', 'timm', 'modelopt', 'onnx', 'onnxruntime'):\n"
         "            raise ImportError('device side imported ' + name)\n"
         "sys.meta_path.insert(0, Block())\n")


def test_bundle_builder_runs_from_the_bundle_alone(jetson_bundle, tmp_path):
    """The copied builder imports and runs with only the bundle on sys.path (python -S: no
    site-packages, no project install). With tensorrt_rtx added it builds a real engine from the
    bundle's own ONNX (the rtx target), which exercises the same code a Jetson runs."""
    _, path, _ = jetson_bundle
    py = os.path.join(path, "python")
    site = _isolated_env(tmp_path, with_tensorrt_rtx=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([py, site]))
    code = BLOCK + (
        "import engines, pipeline, engines.builder, engines.bundle, engines.compat, engines.cli\n"
        "assert engines.__file__.startswith(%r) and pipeline.__file__.startswith(%r)\n"
        "import pipeline.manifest\n"
        "sys.exit(engines.cli.main(sys.argv[1:]))\n" % (py, py))
    res = subprocess.run([sys.executable, "-S", "-c", code, "targets"], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path))
    assert res.returncode == 0 and "jetson-orin" in res.stdout, res.stderr
    res = subprocess.run([sys.executable, "-S", "-c", code, "build", "--onnx-dir", os.path.join(path, "model"),
                          "--target", "rtx", "--precision", "int8", "--out", str(tmp_path / "out"),
                          "--compute-capabilities", "8.6", "--quiet"], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path))
    assert res.returncode == 0 and "engine built: rtx int8" in res.stdout, res.stderr[-2000:]
    engine = glob.glob(str(tmp_path / "out" / "engines" / "rtx" / "*" / "int8" / "model.engine"))
    assert len(engine) == 1 and mf.read(engine[0], expect_kind="engine").stage["layers"]["conv_input_precision"]
    # without any TensorRT, the device-side build refuses in one line (exit 3) instead of bundling again
    (tmp_path / "bare").mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([py, _isolated_env(tmp_path / "bare", False)]))
    res = subprocess.run([sys.executable, "-S", "-c", code, "build", "--onnx-dir", os.path.join(path, "model"),
                          "--target", "jetson-orin", "--out", str(tmp_path / "out2"), "--no-bundle"],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert res.returncode == 3 and res.stderr.startswith("error: cannot build jetson-orin here: there is no TensorRT"), \
        res.stderr


def test_datacenter_and_xavier_bundles(tmp_path, engines_onnx_dir):
    res = run_cli("build", "--onnx-dir", engines_onnx_dir, "--target", "datacenter-hopper", "--out", str(tmp_path))
    assert res.returncode == 0 and "No datacenter-hopper engine built here" in res.stdout, res.stderr
    hopper = str(tmp_path / "bundle" / "datacenter-hopper")
    assert "<user>@<server>" in res.stdout and "TensorRT 10.x" in open(os.path.join(hopper, "README.md")).read()
    assert "--optShapes=input:32x3x56x56" in open(os.path.join(hopper, "trtexec_commands.sh")).read()

    # Xavier (JetPack 5.1, TensorRT 8.5, opset <= 17): INT8 the implicit way, FP32 ONNX + cache, on DLA core 0
    res = run_cli("build", "--onnx-dir", engines_onnx_dir, "--target", "xavier", "--dla-core", "0", "--out",
                  str(tmp_path))
    assert res.returncode == 0, res.stderr
    xavier = str(tmp_path / "bundle" / "jetson-xavier")
    m = mf.read(os.path.join(xavier, "SHA256SUMS"), expect_kind="bundle")
    assert m.stage["precisions"] == {"int8": "model.onnx", "fp16": "model.fp16.onnx"}
    assert m.stage["calibration"]["used_by_build"] is True
    assert not os.path.exists(os.path.join(xavier, "model", "model.int8.onnx"))
    trtexec = open(os.path.join(xavier, "trtexec_commands.sh")).read()
    assert "--int8 --calib=model/model.int8.calib.cache" in trtexec and "--stronglyTyped" not in trtexec
    assert "--useDLACore=0 --allowGPUFallback" in trtexec and "--maxShapes=input:1x3x56x56" in trtexec
    config = open(os.path.join(xavier, "deepstream", "config_infer_primary_classifier.txt")).read()
    assert "int8-calib-file=../model/model.int8.calib.cache" in config and "use-dla-core=0" in config


def test_opset_above_the_ceiling_is_refused_before_bundling(tmp_path, engines_onnx_dir):
    old_parser = dataclasses.replace(resolve_target("jetson-orin"), max_opset=17)
    with pytest.raises(UserError) as e:
        bundle.write_bundle(engines_onnx_dir, old_parser, str(tmp_path), "int8", "test")
    assert "opset 19" in str(e.value) and "implicit" in str(e.value)
    b = bundle.write_bundle(engines_onnx_dir, old_parser, str(tmp_path), "fp16", "test")
    assert b.precisions == {"fp16": "model.fp16.onnx"}
    assert any(n.startswith("int8 left out") and "opset 19" in n for n in b.notes)


def test_a_failing_bundle_leaves_the_earlier_one(tmp_path, engines_onnx_dir, monkeypatch):
    target = resolve_target("datacenter-ada")
    first = bundle.write_bundle(engines_onnx_dir, target, str(tmp_path), "int8", "test")
    before = open(os.path.join(first.path, "SHA256SUMS")).read()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(deploy_files, "readme", broken)
    with pytest.raises(OSError):
        bundle.write_bundle(engines_onnx_dir, target, str(tmp_path), "fp16", "test")
    assert open(os.path.join(first.path, "SHA256SUMS")).read() == before
    assert os.listdir(os.path.join(str(tmp_path), "bundle")) == ["datacenter-ada"]


def test_missing_calibration_output_says_run_calibrate(tmp_path, engines_onnx_dir):
    import shutil

    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(os.path.join(engines_onnx_dir, name), str(tmp_path / name))
    res = run_cli("build", "--onnx-dir", str(tmp_path), "--target", "jetson", "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "run make calibrate first" in res.stderr and "\n" == res.stderr[-1]
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "o" / "bundle").exists()


def test_jetson_detection(tmp_path):
    assert not host.is_jetson(str(tmp_path))
    (tmp_path / "proc" / "device-tree").mkdir(parents=True)
    (tmp_path / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert host.is_jetson(str(tmp_path))
    info = host.detect(str(tmp_path))
    assert info.jetson and info.jetson_model.startswith("NVIDIA Jetson AGX Orin") and info.gpu.compute_capability == "8.7"
    other = tmp_path / "other"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "nv_tegra_release").write_text("# R35 (release), REVISION: 4.1\n")
    assert host.is_jetson(str(other))
    # on a Jetson, a Jetson target builds directly (given a TensorRT with the usual API)
    with open(os.path.join(os.path.dirname(__file__), "data", "trt_api", "tensorrt-10.13.json")) as f:
        api = trt_api.from_module(api_surface.stand_in(json.load(f), "tensorrt"))
    assert builder.why_not_here(resolve_target("jetson"), api, info) is None
