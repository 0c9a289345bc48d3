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
import shutil

from inception_deploy.engines import api_surface, builder, bundle, bundle_readme, deploy_files, host, targets, trt_api
from inception_deploy.engines.targets import resolve_target
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.summary import summarize


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "inception_deploy.pipeline", *args], capture_output=True, text=True,
                          cwd=paths.REPO_ROOT)


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory, engines_onnx_dir):
    out = str(tmp_path_factory.mktemp("bundle_out"))
    res = run_cli("build", "--onnx-dir", engines_onnx_dir, "--target", "jetson", "--precision", "int8", "--out", out,
                  "--eval-count", "200")
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
                 "SHA256SUMS.json", "python/engines/builder.py", "python/engines/targets/jetson-orin.json",
                 "python/pipeline/manifest.py", "python/pipeline/errors.py", "python/pipeline/hashing.py",
                 "verify_on_device.sh", "eval/images.json", "eval/reference_logits.npy",
                 "python/benchmarks/device_verify.py", "python/runtime/backends/tensorrt.py",
                 "deepstream/deepstream_app_config.txt", "deepstream/run_gst_launch.sh"):
        assert name in files, name
    assert "model/model.onnx" not in files and "model/model.onnx.json" not in files  # FP32 only when asked for
    assert sum(f.startswith("eval/images/") for f in files) == 200
    # only device modules: no TOML target files, no host-side bundle/text generators, no torch-side code
    host_only = ("engines/bundle.py", "engines/deploy_files.py", "engines/deepstream.py", "engines/eval_set.py",
                 "engines/api_surface.py", "engines/trtexec.py", "pipeline/export.py", "pipeline/cli.py",
                 "benchmarks/gate.py", "benchmarks/runners/torch_runner.py", "calibration/")
    assert not [f for f in files if f.startswith("python/") and (f.endswith(".toml") or any(
        h in f for h in host_only) or "/models/" in f)]
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
    assert "-m inception_deploy.engines build" in build and "--target jetson-orin" in build and "--no-bundle" in build
    trtexec = open(os.path.join(path, "trtexec_commands.sh")).read()
    assert "--onnx=model/model.int8.onnx" in trtexec and "--stronglyTyped" in trtexec
    assert "--minShapes=input:1x3x56x56" in trtexec and "--maxShapes=input:4x3x56x56" in trtexec
    # TensorRT 10.3: --skipInference, optimisation level, the builder's timing cache file
    assert "--skipInference" in trtexec and "--buildOnly" not in trtexec and "--builderOptimizationLevel=3" in trtexec
    assert '--timingCacheFile="$TIMING_CACHE"' in trtexec and "timing-tensorrt-$TRT_VERSION.cache" in trtexec
    config = open(os.path.join(path, "deepstream", "config_infer_primary_classifier.txt")).read()
    pre = mf.read(os.path.join(engines_onnx_dir, "model.onnx")).preprocessing
    assert "network-type=1" in config and "network-mode=1" in config and "infer-dims=3;56;56" in config
    # nvinfer loads the prebuilt softmax engine and nothing else: no onnx-file to fall back to FP16 from
    assert "model-engine-file=../out/engines/jetson-orin/tiny_inception.tiny200/int8-softmax/model.engine" in config
    assert "\nonnx-file" not in config and "output-blob-names=probabilities" in config
    assert "scaling-filter=1" in config and pre["interpolation"] == "bilinear"
    offsets = [float(v) for v in config.split("offsets=")[1].split("\n")[0].split(";")]
    assert offsets == pytest.approx([255 * v for v in pre["mean"]], abs=1e-3)
    labels = open(os.path.join(path, "deepstream", "labels.txt")).read()
    assert labels.count("\n") == 1 and len(labels.strip().split(";")) == 200
    readme = open(os.path.join(path, "README.md")).read()
    assert "JetPack 6.1" in readme and "build_on_device.sh" in readme and "trtexec" in readme
    nv = mf.read(os.path.join(path, "SHA256SUMS")).stage["deepstream_agreement"]
    assert nv["images"] == 200 and 0 < nv["top1_agreement_percent"] < 100
    assert "**%.2f %%**" % nv["top1_agreement_percent"] in readme
    assert "build_on_device.sh [int8|fp16]" in readme and "fp32" not in open(os.path.join(path, "build_on_device.sh")).read()


def _isolated_site(tmp_path, names):
    """A folder holding only the named packages of this venv (symlinks), e.g. tensorrt_rtx."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    sp = os.path.dirname(os.path.dirname(numpy.__file__))
    for name in names:
        for found in glob.glob(os.path.join(sp, name)):
            link = site / os.path.basename(found)
            if not link.exists():
                os.symlink(found, str(link))
    return str(site)


def _bare(paths, blocked, body):
    """Code for ``python -I -S``: no site-packages, no environment, only ``paths`` on sys.path, and the
    ``blocked`` top-level modules made unimportable."""
    return ("import sys, importlib.abc\n"
            "sys.path[:0] = %r\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in %r:\n"
            "            raise ImportError('device side imported ' + name)\n"
            "sys.meta_path.insert(0, Block())\n" % (list(paths), tuple(blocked))) + body


HOST = ("torch", "timm", "modelopt", "onnx", "onnxruntime", "cv2", "matplotlib", "tomli")
BUILDER_MODULES = [(m[:-3].replace("/", ".").replace(".__init__", "") if m.startswith(bundle.NAMESPACE) else
                    bundle.NAMESPACE + "." + m[:-3].replace("/", ".").replace(".__init__", ""))
                   for m in bundle.device_modules(bundle.BUILDER_ROOTS)]


def python38():
    """A Python 3.8 (JetPack 5's) where this machine has one (pyenv), else None."""
    import shutil as sh

    for candidate in [sh.which("python3.8")] + sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8"))):
        if candidate and subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                                        capture_output=True).returncode == 0:
            return candidate
    return None


def test_the_bundle_builder_imports_with_the_standard_library_alone(jetson_bundle):
    """Every module the on-device builder needs imports under python -I -S with numpy and Pillow blocked
    too: the standard library and the bundle's python/ folder, nothing else (then TensorRT on the device)."""
    _, path, _ = jetson_bundle
    py = os.path.join(path, "python")
    assert "inception_deploy.engines.builder" in BUILDER_MODULES and "inception_deploy.pipeline.manifest" in BUILDER_MODULES
    code = _bare([py], HOST + ("numpy", "PIL"), (
        "import importlib\n"
        "for m in %r:\n    importlib.import_module(m)\n"
        "from inception_deploy.engines import cli\n"
        "sys.exit(cli.main(sys.argv[1:]))\n" % BUILDER_MODULES))
    interpreters = [sys.executable] + ([python38()] if python38() else [])
    for exe in interpreters:
        res = subprocess.run([exe, "-I", "-S", "-c", code, "targets"], capture_output=True, text=True, cwd=path)
        assert res.returncode == 0 and "jetson-orin" in res.stdout and "JetPack 6.1" in res.stdout, (exe, res.stderr)
    # record which interpreters ran (a Python 3.8 exists on the development machines through pyenv)
    print("bare-interpreter check ran on: %s" % ", ".join(interpreters))


def test_bundle_builder_runs_from_the_bundle_alone(jetson_bundle, tmp_path):
    """With only the bundle's python/ and tensorrt_rtx on sys.path (python -I -S, numpy blocked) the
    builder builds a real engine from the bundle's own ONNX for the rtx target, the same code a
    Jetson runs; without any TensorRT it refuses in one line (exit 3) instead of bundling again."""
    _, path, _ = jetson_bundle
    py = str(tmp_path / "python")
    shutil.copytree(os.path.join(path, "python"), py)
    targets.write_target_json(resolve_target("rtx"), os.path.join(py, "engines", "targets"))
    site = _isolated_site(tmp_path, ["tensorrt_rtx", "tensorrt_rtx_bindings", "tensorrt_rtx_libs", "tensorrt_rtx*"])
    code = _bare([py, site], HOST + ("numpy", "PIL"), "from inception_deploy.engines import cli\nsys.exit(cli.main(sys.argv[1:]))\n")
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code, "build", "--onnx-dir", os.path.join(path, "model"),
                          "--target", "rtx", "--precision", "int8", "--out", str(tmp_path / "out"),
                          "--compute-capabilities", "8.6", "--quiet"], capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode == 0 and "engine built: rtx int8" in res.stdout, res.stderr[-2000:]
    engine = glob.glob(str(tmp_path / "out" / "engines" / "rtx" / "*" / "int8" / "model.engine"))
    assert len(engine) == 1 and mf.read(engine[0], expect_kind="engine").stage["layers"]["conv_input_precision"]
    bare = _bare([os.path.join(path, "python")], HOST + ("numpy", "PIL", "tensorrt", "tensorrt_rtx"),
                 "from inception_deploy.engines import cli\nsys.exit(cli.main(sys.argv[1:]))\n")
    res = subprocess.run([sys.executable, "-I", "-S", "-c", bare, "build", "--onnx-dir", os.path.join(path, "model"),
                          "--target", "jetson-orin", "--out", str(tmp_path / "out2"), "--no-bundle"],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode == 3 and res.stderr.startswith("error: cannot build jetson-orin here: there is no TensorRT"), \
        res.stderr


def test_verify_on_device_writes_the_bench_report_with_onnxruntime_standing_in(jetson_bundle, tmp_path):
    """The device runner (bundle python/, numpy + Pillow, no torch/onnx package) runs the bundle's INT8 ONNX
    through the same runner interface a TensorRT engine uses, against the host's recorded FP32 logits; the
    report has the host bench's schema and image fingerprint, and gate takes it."""
    from inception_deploy.benchmarks import gate
    from inception_deploy.benchmarks.report import load_report

    out, path, _ = jetson_bundle
    site = _isolated_site(tmp_path, ["numpy", "numpy.libs", "PIL", "pillow.libs", "onnxruntime"])
    code = _bare([os.path.join(path, "python"), site], ("torch", "timm", "modelopt", "onnx", "cv2", "matplotlib"),
                 "import benchmarks.device_verify as d\nsys.exit(d.main(sys.argv[1:]))\n")
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code, "--bundle", path, "--target", "jetson-orin",
                          "--precision", "int8", "--engine", os.path.join(path, "model", "model.int8.onnx"),
                          "--out", str(tmp_path / "verify"), "--iterations", "5", "--batch-sizes", "1,4"],
                         capture_output=True, text=True, cwd=str(tmp_path))
    assert res.returncode == 0 and "verified: int8/onnxruntime top-1 agreement" in res.stdout, res.stderr[-3000:]
    report = load_report(str(tmp_path / "verify" / "report.json"))
    assert report["command"] == "verify-on-device" and report["reference"] == "fp32/onnxruntime:host"
    rows = {r["id"]: r for r in report["rows"]}
    assert rows["fp32/onnxruntime:host"]["latency"] == [] and rows["fp32/onnxruntime:host"]["accuracy"]["images"] == 200
    int8 = rows["int8/onnxruntime"]
    assert int8["drift"]["top1_agreement"] > 0.9 and int8["drift"]["mean_kl"] >= 0
    assert [lr["batch"] for lr in int8["latency"]] == [1, 4] and "p99" in int8["latency"][0]["e2e_ms"]
    ev = json.load(open(os.path.join(path, "eval", "images.json")))
    assert report["identity"]["images"]["fingerprint"] == ev["source"]["fingerprint"]   # the host's image set
    assert "environment" in report and mf.read(str(tmp_path / "verify" / "report.json"), expect_kind="report")
    base = gate.baseline_from_report(report, str(tmp_path / "verify" / "report.json"), dict(gate.DEFAULT_LIMITS))
    assert gate.evaluate(report, base).passed


def test_verify_on_device_errors_are_one_line_with_the_cli_exit_codes(jetson_bundle, tmp_path, capsys):
    """The device verifier runs under the one command runner: a missing engine is bad input (exit 2), an
    agreement under the limit a failed check (exit 1), each one ``error:`` line."""
    from inception_deploy.benchmarks import device_verify

    _, path, _ = jetson_bundle
    common = ["--bundle", path, "--target", "jetson-orin", "--precision", "int8", "--out", str(tmp_path / "v"),
              "--iterations", "2", "--batch-sizes", "1"]
    assert device_verify.main(common + ["--engine", str(tmp_path / "no such.engine")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: engine not found: ") and err.count("\n") == 1
    engine = os.path.join(path, "model", "model.int8.onnx")
    assert device_verify.main(common + ["--engine", engine, "--min-top1-agreement", "1.01"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("error: int8/onnxruntime agrees with the host FP32 on ") and err[-1].endswith("limit 101.0 %")


def test_datacenter_and_xavier_bundles(tmp_path, engines_onnx_dir):
    res = run_cli("build", "--onnx-dir", engines_onnx_dir, "--target", "datacenter-hopper", "--out", str(tmp_path),
                  "--no-eval-set")
    assert res.returncode == 0 and "No datacenter-hopper engine built here" in res.stdout, res.stderr
    hopper = str(tmp_path / "bundle" / "datacenter-hopper")
    assert "user@server" in res.stdout and "TensorRT 10.x" in open(os.path.join(hopper, "README.md")).read()
    assert "--optShapes=input:32x3x56x56" in open(os.path.join(hopper, "trtexec_commands.sh")).read()

    # Xavier (JetPack 5.1, TensorRT 8.5, opset <= 17): INT8 the implicit way, FP32 ONNX + cache, on DLA core 0
    res = run_cli("build", "--onnx-dir", engines_onnx_dir, "--target", "xavier", "--dla-core", "0", "--out",
                  str(tmp_path), "--no-eval-set")
    assert res.returncode == 0, res.stderr
    xavier = str(tmp_path / "bundle" / "jetson-xavier")
    m = mf.read(os.path.join(xavier, "SHA256SUMS"), expect_kind="bundle")
    assert m.stage["precisions"] == {"int8": "model.onnx", "fp16": "model.fp16.onnx", "fp32": "model.onnx"}
    assert m.stage["calibration"]["used_by_build"] is True
    assert not os.path.exists(os.path.join(xavier, "model", "model.int8.onnx"))
    trtexec = open(os.path.join(xavier, "trtexec_commands.sh")).read()
    assert "--int8 --fp16 --calib=model/model.int8.calib.cache --useDLACore=0 --allowGPUFallback" in trtexec
    assert "--stronglyTyped" not in trtexec and "--maxShapes=input:1x3x56x56" in trtexec
    # trtexec 8.5 (JetPack 5): --buildOnly, no --builderOptimizationLevel (both from sampleOptions.cpp at 8.5.2)
    assert "--buildOnly" in trtexec and "--skipInference" not in trtexec and "OptimizationLevel" not in trtexec
    config = open(os.path.join(xavier, "deepstream", "config_infer_primary_classifier.txt")).read()
    assert "model-engine-file=../out/engines/jetson-xavier/tiny_inception.tiny200/int8-dla0-softmax/model.engine" \
        in config and "use-dla-core=0" in config and "\nonnx-file" not in config and "\nint8-calib-file" not in config


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

    monkeypatch.setattr(bundle_readme, "readme", broken)
    with pytest.raises(OSError):
        bundle.write_bundle(engines_onnx_dir, target, str(tmp_path), "fp16", "test")
    assert open(os.path.join(first.path, "SHA256SUMS")).read() == before
    assert os.listdir(os.path.join(str(tmp_path), "bundle")) == ["datacenter-ada"]


def test_missing_calibration_output_says_run_calibrate(tmp_path, engines_onnx_dir):
    import shutil

    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(os.path.join(engines_onnx_dir, name), str(tmp_path / name))
    res = run_cli("build", "--onnx-dir", str(tmp_path), "--target", "jetson", "--out", str(tmp_path / "o"),
                  "--no-eval-set")
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


def test_bundle_documents_follow_the_schemas(jetson_bundle, validate_document):
    """The bundle's manifest, the manifests of the models it carries, its verification set and the
    target JSON its builder reads, against pipeline/schemas/."""
    _, path, _ = jetson_bundle
    for rel in ["SHA256SUMS.json"] + sorted(os.path.relpath(p, path)
                                            for p in glob.glob(os.path.join(path, "model", "*.json"))):
        with open(os.path.join(path, rel), encoding="utf-8") as f:
            validate_document("manifest", json.load(f))
    with open(os.path.join(path, "eval", "images.json"), encoding="utf-8") as f:
        validate_document("eval-set", json.load(f))
    with open(os.path.join(path, "python", "engines", "targets", "jetson-orin.json"), encoding="utf-8") as f:
        validate_document("target", json.load(f))
