"""What a deploy bundle tells the device: quoted shell scripts (a model called ``cats&dogs v2``), trtexec
options per TensorRT version, DLA INT8 from the calibration cache, DeepStream's parser reading what the
runtime reads, and a Triton config that Triton's own protobuf parses."""
import glob
import os
import shlex
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest

from inception_deploy.engines import deepstream, eval_set, trtexec
from inception_deploy.engines.bundle import write_bundle
from inception_deploy.engines.deploy_files import copy_hint
from inception_deploy.engines.targets import resolve_target
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.errors import UserError

NAME = "cats&dogs v2"
REFS = os.path.join(paths.REPO_ROOT, ".venv", "test-refs")


def _renamed_copy(src: str, dest: str, name: str) -> str:
    """A copy of an export + calibrate folder whose model is called ``name``; calibration manifests are
    rewritten first and the INT8 model's link to them re-pointed, as a calibrate run would write them."""
    shutil.copytree(src, dest)
    sides = sorted(glob.glob(os.path.join(dest, "*.json")), key=lambda p: not p.endswith(".cache.json"))
    for side in sides:
        artifact = side[:-len(".json")]
        m = mf.read(artifact, verify=False)
        m.model.name = name
        link = m.stage.get("calibration_manifest")
        if link:
            link["sha256"] = mf.file_sha256(os.path.join(dest, link["file"]))
        mf.write(m, artifact)
    return dest


@pytest.fixture(scope="module")
def odd_bundle(tmp_path_factory, engines_onnx_dir):
    root = tmp_path_factory.mktemp("odd")
    onnx_dir = _renamed_copy(engines_onnx_dir, str(root / "onnx"), NAME)
    out = str(root / "out dir & more")
    res = subprocess.run([sys.executable, "-m", "inception_deploy.pipeline", "build", "--onnx-dir", onnx_dir, "--target", "jetson",
                          "--precision", "int8", "--out", out, "--eval-count", "20", "--no-deepstream-check"],
                         capture_output=True, text=True, cwd=paths.REPO_ROOT)
    assert res.returncode == 0, res.stderr
    return os.path.join(out, "bundle", "jetson-orin"), res.stdout


def _recorder(folder, name: str, exit_code: int = 0, on_c: str = "") -> str:
    """A fake program that appends its argv (one word a line, then a blank line) to ``<folder>/<name>.argv``."""
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write('#!/usr/bin/env bash\nfor a in "$@"; do printf "%%s\\n" "$a"; done >> "%s.argv"\necho >> "%s.argv"\n'
                '%sexit %d\n' % (path, path, on_c, exit_code))
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    return path


def _calls(path: str):
    with open(path + ".argv") as f:
        return [block.split("\n") for block in f.read().strip("\n").split("\n\n")]


def test_every_script_is_valid_bash_and_quotes_the_model_name(odd_bundle):
    path, stdout = odd_bundle
    for script in ("build_on_device.sh", "trtexec_commands.sh", "verify_on_device.sh", "deepstream/run_gst_launch.sh"):
        res = subprocess.run(["bash", "-n", os.path.join(path, script)], capture_output=True, text=True)
        assert res.returncode == 0, (script, res.stderr)
    assert "'out/engines/jetson-orin/cats&dogs v2/int8'" in open(os.path.join(path, "trtexec_commands.sh")).read()
    # the printed hint: every word survives the shell as one argument
    scp = next(line.strip() for line in stdout.splitlines() if line.strip().startswith("scp -r"))
    words = shlex.split(scp)
    assert words[:2] == ["scp", "-r"] and words[2].endswith(os.path.join("out dir & more", "bundle", "jetson-orin"))
    ssh = shlex.split(next(line.strip() for line in stdout.splitlines() if line.strip().startswith("ssh ")))
    assert ssh == ["ssh", "user@jetson", "~/jetson-orin/build_on_device.sh int8"]
    assert copy_hint("a b&c/jetson-orin", resolve_target("jetson"), "int8")[0] == \
        "scp -r 'a b&c/jetson-orin' user@jetson:~/"


def test_trtexec_script_runs_with_a_fake_trtexec_and_passes_each_word_intact(odd_bundle, tmp_path):
    path, _ = odd_bundle
    work = str(tmp_path / "bundle")
    shutil.copytree(path, work)
    bin_dir = str(tmp_path / "bin")
    os.makedirs(bin_dir)
    fake = _recorder(bin_dir, "trtexec")
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], PYTHON="false")
    res = subprocess.run(["bash", os.path.join(work, "trtexec_commands.sh"), "int8"], capture_output=True, text=True,
                         env=env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    (argv,) = _calls(fake)
    target = resolve_target("jetson-orin")
    chw = [3, 56, 56]
    engine = "out/engines/jetson-orin/%s/int8/model.engine" % NAME
    expected = [a if isinstance(a, str) else a.prefix + "out/engines/jetson-orin/timing-tensorrt-unknown.cache"
                for a in trtexec.trtexec_args(target, "int8", "model/model.int8.onnx", engine, "input", chw)]
    assert argv == expected
    assert os.path.isdir(os.path.join(work, "out", "engines", "jetson-orin", NAME, "int8"))
    assert sorted(os.listdir(str(tmp_path))) == ["bin", "bundle"]          # nothing ran "dogs v2/..." as a command
    res = subprocess.run(["bash", os.path.join(work, "trtexec_commands.sh"), "fp32"], capture_output=True, text=True,
                         env=env)
    assert res.returncode == 2 and "usage:" in res.stderr


def test_build_and_verify_scripts_hand_the_builder_exact_arguments(odd_bundle, tmp_path):
    path, _ = odd_bundle
    work = str(tmp_path / "my bundle&x")
    shutil.copytree(path, work)
    fake = _recorder(str(tmp_path), "python3")
    env = dict(os.environ, PYTHON=fake)
    res = subprocess.run([os.path.join(work, "build_on_device.sh"), "fp16", "--softmax"], capture_output=True,
                         text=True, env=env)
    assert res.returncode == 0, res.stderr
    calls = _calls(fake)
    assert calls[0] == ["-c", "import tensorrt"]
    assert calls[1] == ["-m", "inception_deploy.engines", "build", "--onnx-dir", os.path.join(work, "model"), "--target", "jetson-orin",
                        "--precision", "fp16", "--out", os.path.join(work, "out"), "--no-bundle", "--softmax"]
    res = subprocess.run([os.path.join(work, "build_on_device.sh"), "fp32"], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "this bundle builds int8|fp16" in res.stderr      # no FP32 ONNX: not offered
    os.remove(fake + ".argv")
    res = subprocess.run([os.path.join(work, "verify_on_device.sh"), "int8", "--dla-core", "1", "--iterations", "3"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    calls = _calls(fake)
    assert ["-m", "inception_deploy.engines", "build", "--onnx-dir", os.path.join(work, "model"), "--target", "jetson-orin",
            "--precision", "int8", "--out", os.path.join(work, "out"), "--no-bundle", "--dla-core", "1"] in calls
    assert calls[-1] == ["-m", "inception_deploy.benchmarks.device_verify", "--bundle", work, "--target", "jetson-orin", "--precision",
                         "int8", "--dla-core", "1", "--out", os.path.join(work, "out", "verify", "int8"),
                         "--iterations", "3"]


def test_changed_bundle_files_are_refused_before_building(odd_bundle, tmp_path):
    path, _ = odd_bundle
    work = str(tmp_path / "b")
    shutil.copytree(path, work)
    with open(os.path.join(work, "model", "model.int8.onnx"), "ab") as f:
        f.write(b"x")
    res = subprocess.run([os.path.join(work, "build_on_device.sh")], capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=_recorder(str(tmp_path), "python3")))
    assert res.returncode == 2 and "SHA256SUMS" in res.stderr


@pytest.mark.parametrize("target, present, absent", [
    ("jetson-orin-jp5", ["--buildOnly", "--int8", "--calib=c.cache"], ["--skipInference", "--stronglyTyped",
                                                                       "--builderOptimizationLevel=3"]),
    ("jetson-orin", ["--skipInference", "--stronglyTyped", "--builderOptimizationLevel=3"], ["--buildOnly", "--int8"]),
    ("datacenter-ampere", ["--hardwareCompatibilityLevel=ampere+", "--stronglyTyped", "--optShapes=input:32x3x8x8"],
     ["--buildOnly"]),
])
def test_trtexec_options_follow_the_targets_tensorrt(target, present, absent):
    """Checked against trtexec's parser (samples/common/sampleOptions.cpp) at 8.5.2, 8.6.1 and 10.3.0:
    --buildOnly in 8.5 only, --skipInference, --builderOptimizationLevel and --hardwareCompatibilityLevel
    from 8.6, --stronglyTyped from 10."""
    t = resolve_target(target)
    args = [a for a in trtexec.trtexec_args(t, "int8", "m.onnx", "e.engine", "input", [3, 8, 8], "c.cache")
            if isinstance(a, str)]
    for word in present:
        assert word in args, (target, word)
    for word in absent:
        assert word not in args, (target, word)
    assert "--memPoolSize=workspace:%d" % t.workspace_mib in args       # MiB, the unit every version defaults to


def test_dla_int8_builds_from_the_calibration_cache_and_a_qdq_model_is_refused(tmp_path, engines_onnx_dir):
    orin = resolve_target("jetson-orin")
    b = write_bundle(engines_onnx_dir, orin, str(tmp_path), "int8", "test", dla_core=0)
    assert b.precisions["int8"] == "model.onnx" and b.manifest.stage["int8_mode"] == "implicit"
    text = open(os.path.join(b.path, "trtexec_commands.sh")).read()
    assert "--int8 --fp16 --calib=model/model.int8.calib.cache --useDLACore=0 --allowGPUFallback" in text
    assert "int8-dla0/model.engine" in text and "--stronglyTyped" not in text.split("int8)")[1].split(";;")[0]
    with pytest.raises(UserError) as e:
        from inception_deploy.engines.inputs import locate
        locate(os.path.join(engines_onnx_dir, "model.int8.onnx"), orin, "int8", dla_core=0)
    assert "calibration scales, not from Q/DQ nodes" in str(e.value) and "--dla-core -1" in str(e.value)


def test_deepstream_reads_the_runtimes_label_and_probability(engines_onnx_dir, val_dir):
    """nvinfer's default classifier parser (value > threshold and > 0, first maximum wins) on the softmax
    output gives the Classifier's top-1 label and probability; on raw logits it often gives no label."""
    from inception_deploy.runtime import Classifier
    from inception_deploy.pipeline.metrics import softmax

    with Classifier.load(os.path.join(engines_onnx_dir, "model.onnx"), providers=["CPUExecutionProvider"]) as clf:
        folder = eval_set.choose(val_dir, clf.labels, 50, 0)
        batch = np.concatenate([b.images for b in folder.batches(clf.preprocessing, 50)])
        logits = clf.logits(batch)
        top = clf.predictions(logits, top_k=1)
    labels = [name for name in clf.label_names]
    unlabeled = 0
    for row, probs, best in zip(logits, softmax(logits), top):
        parsed = eval_set.nvinfer_parse(probs.astype(np.float32), threshold=0.0)
        assert parsed is not None and labels[parsed["index"]] == best[0].label_name
        assert parsed["confidence"] == pytest.approx(best[0].probability, rel=1e-5)
        unlabeled += eval_set.nvinfer_parse(row - row.max() - 1.0) is None      # all logits <= 0
    assert unlabeled == len(logits)


def test_triton_config_parses_with_tritons_own_protobuf(tmp_path, engines_onnx_dir):
    import importlib.util

    from google.protobuf import text_format

    pb2 = os.path.join(REFS, "model_config_pb2.py")
    assert os.path.isfile(pb2), "run make setup (tools/fetch_test_refs.py fetches Triton's model_config_pb2)"
    spec = importlib.util.spec_from_file_location("model_config_pb2", pb2)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    onnx_dir = _renamed_copy(engines_onnx_dir, str(tmp_path / "onnx"), NAME)
    b = write_bundle(onnx_dir, resolve_target("h100"), str(tmp_path / "out"), "int8", "test")
    folder = os.path.join(b.path, "triton", deepstream.triton_name(NAME))
    config = text_format.Parse(open(os.path.join(folder, "config.pbtxt")).read(), module.ModelConfig())
    assert config.name == "cats_dogs_v2" == os.path.basename(folder) and config.platform == "tensorrt_plan"
    assert config.max_batch_size == 128 and list(config.input[0].dims) == [3, 56, 56]
    assert config.input[0].data_type == module.TYPE_FP32 and config.output[0].name == "logits"
    assert list(config.output[0].dims) == [200] and config.output[0].label_filename == "labels.txt"
    assert len(open(os.path.join(folder, "labels.txt")).read().splitlines()) == 200
    assert list(config.dynamic_batching.preferred_batch_size) == [32, 128]
