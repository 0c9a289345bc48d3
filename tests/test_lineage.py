"""The one lineage check (pipeline/lineage.py) as every consumer meets it: build, bundle, verify and
the runtime refuse, in one line naming the broken link and the command that regenerates it, an INT8
model beside another run's calibration cache, a corrupt cache, a stale derived model, an ONNX whose
graph contradicts its manifest, and a model name that would write outside --out. Bundles hold
exactly the file given with --onnx.

Artifacts: the engines-stage fixture (export + modelopt INT8/FP16 + cache of the trained test
model), copied per test and then broken on purpose."""
import os
import shutil
import subprocess
import sys

import onnx
import pytest

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.errors import UserError


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "inception_deploy.pipeline", *args], capture_output=True, text=True,
                          cwd=paths.REPO_ROOT, env=env)


def one_error_line(res, code=2):
    lines = res.stderr.strip().splitlines()
    assert res.returncode == code and len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-3000:]
    return lines[0]


@pytest.fixture
def onnx_dir(tmp_path, engines_onnx_dir):
    out = tmp_path / "onnx"
    shutil.copytree(engines_onnx_dir, str(out))
    return str(out)


def rewrite_manifest(path, **changes):
    """Write ``path``'s manifest again (consistent with the file as it is now), with ``changes``."""
    m = mf.read(path, verify=False)
    for key, value in changes.items():
        setattr(m, key, value)
    m.artifact, m.created = {}, ""
    mf.write(m, path)


def another_calibration_run(folder):
    """Replace the cache and its manifest by a self-consistent pair from 'another run' (other scales)."""
    cache = os.path.join(folder, "model.int8.calib.cache")
    lines = open(cache).read().splitlines()
    lines[1] = lines[1].rsplit(": ", 1)[0] + ": 3d000000"
    open(cache, "w").write("\n".join(lines) + "\n")
    rewrite_manifest(cache)
    return cache


def test_int8_model_beside_another_runs_cache_is_refused_by_every_consumer(onnx_dir, tmp_path, val_dir):
    another_calibration_run(onnx_dir)
    int8 = os.path.join(onnx_dir, "model.int8.onnx")
    for args in (["build", "--onnx-dir", onnx_dir, "--target", "jetson", "--precision", "int8"],
                 ["build", "--onnx-dir", onnx_dir, "--target", "rtx", "--precision", "int8", "--quiet"],
                 ["verify", "--engine", int8, "--images", val_dir, "--count", "8", "--no-latency"]):
        res = run_cli(*args, "--out", str(tmp_path / "out"))
        line = one_error_line(res)
        assert "come from different calibrate runs" in line and "make calibrate" in line, line
    assert not (tmp_path / "out").exists()
    from inception_deploy.runtime import Classifier
    with pytest.raises(UserError, match="different calibrate runs"):
        Classifier.load(int8)


def test_corrupt_calibration_cache_never_reaches_a_bundle(onnx_dir, tmp_path):
    cache = os.path.join(onnx_dir, "model.int8.calib.cache")
    with open(cache, "a") as f:
        f.write("conv1: 3c23d70a\n")                              # changed after its manifest was written
    for target in ("jetson-orin", "jetson-xavier"):
        line = one_error_line(run_cli("build", "--onnx-dir", onnx_dir, "--target", target, "--precision", "int8",
                                      "--out", str(tmp_path / "out")))
        assert "model.int8.calib.cache" in line and ("does not match its manifest" in line
                                                     or "different calibrate runs" in line), line
    with open(cache, "a") as f:
        f.write("this is not a scale\n")
    rewrite_manifest(cache)                                     # consistent sha256, unparseable content
    line = one_error_line(run_cli("build", "--onnx-dir", onnx_dir, "--target", "jetson-xavier", "--precision",
                                  "int8", "--out", str(tmp_path / "out")))
    assert "expected '<tensor>: <8 hex digits>'" in line and "make calibrate" in line, line
    assert not (tmp_path / "out").exists()                      # no bundle, no SHA256SUMS of a corrupt file


def test_derived_model_older_than_its_parent_is_refused(onnx_dir, tmp_path):
    fp32 = os.path.join(onnx_dir, "model.onnx")
    model = onnx.load(fp32)
    model.producer_version = "re-exported"
    onnx.save(model, fp32)
    rewrite_manifest(fp32)                                      # a consistent, newer model.onnx
    line = one_error_line(run_cli("build", "--onnx-dir", onnx_dir, "--target", "rtx", "--precision", "fp16",
                                  "--out", str(tmp_path / "out")))
    assert "model.fp16.onnx was made from" in line and "older than its parent" in line and "make calibrate" in line


def _graph_with(fp32, out, size=None, input_name=None):
    model = onnx.load(fp32)
    if size:
        for d in model.graph.input[0].type.tensor_type.shape.dim[2:]:
            d.dim_value = size
    if input_name:
        old = model.graph.input[0].name
        model.graph.input[0].name = input_name
        for node in model.graph.node:
            node.input[:] = [input_name if i == old else i for i in node.input]
    onnx.save(model, out)


def test_onnx_that_contradicts_its_manifest_is_refused_by_build_verify_and_calibrate(onnx_dir, tmp_path, val_dir,
                                                                                   calib_dir):
    fp32 = os.path.join(onnx_dir, "model.onnx")
    m = mf.read(fp32)
    cases = {"64x64": dict(size=64), "renamed input": dict(input_name="x")}
    for what, change in cases.items():
        folder = tmp_path / what.replace(" ", "_")
        folder.mkdir()
        path = str(folder / "model.onnx")
        _graph_with(fp32, path, **change)
        mf.write(mf.Manifest(**dict(m.__dict__, artifact={}, created="")), path)   # the 56x56 manifest
        expect = "takes inputs ['batch', 3, 64, 64] but its manifest describes (N, 3, 56, 56)" if "64" in what \
            else "has input 'x' and output 'logits' but its manifest names 'input' and 'logits'"
        for args in (["build", "--onnx", path, "--target", "rtx", "--precision", "fp32", "--out", str(folder / "o")],
                     ["verify", "--engine", path, "--images", val_dir, "--count", "8", "--no-latency", "--out",
                      str(folder / "v")],
                     ["calibrate", "--onnx", path, "--images", calib_dir, "--count", "32"]):
            line = one_error_line(run_cli(*args))
            assert expect in line and "does not belong to this model" in line, (args[0], line)
        assert sorted(os.listdir(str(folder))) == ["model.onnx", "model.onnx.json"]
    # ten label names for a 200-class model
    rewrite_manifest(fp32, model=mf.ModelRecord(**dict(m.model.__dict__, label_names=m.model.label_names[:10],
                                                       num_classes=10)))
    for args in (["calibrate", "--onnx", fp32, "--images", calib_dir, "--count", "32"],
                 ["verify", "--engine", fp32, "--images", val_dir, "--count", "8", "--no-latency", "--out",
                  str(tmp_path / "v")]):
        line = one_error_line(run_cli(*args))
        assert "outputs 200 classes but its manifest lists 10" in line, line


def test_model_name_that_would_leave_the_output_folder_is_refused(onnx_dir, tmp_path):
    fp32 = os.path.join(onnx_dir, "model.onnx")
    m = mf.read(fp32)
    rewrite_manifest(fp32, model=mf.ModelRecord(**dict(m.model.__dict__, name="../../../../x")))
    out = tmp_path / "a" / "b" / "out"
    before = sorted(os.listdir(str(tmp_path)))
    line = one_error_line(run_cli("build", "--onnx", fp32, "--target", "rtx", "--precision", "fp32",
                                  "--out", str(out)))
    assert "model name '../../../../x'" in line and "not usable as a folder name" in line, line
    assert sorted(os.listdir(str(tmp_path))) == before and not os.path.exists(str(tmp_path / "x"))
    # names with spaces and shell characters are names, not paths: accepted
    assert paths.path_component("cats&dogs v2", "model name", "test") == "cats&dogs v2"
    for bad in ("..", ".hidden", "-rf", "a/b", "a\\b", "a\nb", ""):
        with pytest.raises(UserError):
            paths.path_component(bad, "model name", "test")


def test_bundle_holds_exactly_the_onnx_file_asked_for(onnx_dir, tmp_path):
    v2 = os.path.join(onnx_dir, "v2.onnx")
    shutil.copy(os.path.join(onnx_dir, "model.onnx"), v2)
    mf.write(mf.read(os.path.join(onnx_dir, "model.onnx")), v2)
    res = run_cli("build", "--onnx", v2, "--target", "jetson-orin", "--precision", "fp32", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    bundle = tmp_path / "bundle" / "jetson-orin"
    assert sorted(os.listdir(str(bundle / "model"))) == ["v2.onnx", "v2.onnx.json"]
    assert mf.read(str(bundle / "SHA256SUMS"), expect_kind="bundle").stage["precisions"] == {"fp32": "v2.onnx"}
    assert "only v2.onnx" in res.stdout
    # an INT8 Q/DQ file for a target that builds INT8 from FP32 + cache: refused, not swapped for model.onnx
    line = one_error_line(run_cli("build", "--onnx", os.path.join(onnx_dir, "model.int8.onnx"), "--target",
                                  "jetson-xavier", "--precision", "int8", "--out", str(tmp_path / "x")))
    assert "is a onnx-int8 artifact, but jetson-xavier int8 builds from a onnx one" in line, line
    assert not (tmp_path / "x").exists()


def test_lineage_check_passes_a_consistent_chain_and_finds_the_linked_cache(onnx_dir):
    from inception_deploy.pipeline import lineage

    int8 = os.path.join(onnx_dir, "model.int8.onnx")
    m = lineage.check(int8, expect_kind="onnx-int8")
    linked = lineage.linked_calibration(int8, m)
    assert linked.path.endswith("model.int8.calib.cache") and linked.manifest.kind == "calibration"
    assert mf.parent_path(m, int8) == os.path.join(onnx_dir, "model.onnx")
