"""Real TensorRT-RTX builds of the trained test model (FP32, FP16, Q/DQ INT8), their manifests and
layer precisions, atomic writes, up-to-date rebuilds and the refusal of mismatched engines.

TensorRT-RTX builds ahead of time for named compute capabilities without a GPU; the plans cannot
be deserialized here (no driver), so the layer precisions come from the builder's ``Layers:`` log.
"""
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from inception_deploy.engines import api_surface, builder, compat, trt_api
from inception_deploy.engines.builder import build_engine
from inception_deploy.engines.layers import parse_layers_log
from inception_deploy.engines.targets import resolve_target
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.summary import summarize


@pytest.fixture(scope="module")
def built(tmp_path_factory, engines_onnx_dir):
    out = str(tmp_path_factory.mktemp("engines_out"))
    results = {p: build_engine(engines_onnx_dir, "rtx", p, os.path.join(out, "engines"), progress=False)
               for p in ("fp32", "fp16", "int8")}
    return out, results


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_engines_and_manifests(built, engines_onnx_dir):
    out, results = built
    rtx = resolve_target("rtx")
    for precision, r in results.items():
        onnx_name = rtx.onnx_for(precision)
        onnx_path = os.path.join(engines_onnx_dir, onnx_name)
        parent = mf.read(onnx_path)
        assert r.engine_path == os.path.join(out, "engines", "rtx", parent.model.name, precision, "model.engine")
        m = mf.read(r.engine_path, expect_kind="engine")          # verifies the engine's sha256 too
        s = m.stage
        assert m.parent["sha256"] == parent.artifact["sha256"] == s["onnx"]["sha256"] == sha256(onnx_path)
        assert s["onnx"]["manifest_sha256"] == sha256(mf.sidecar(onnx_path))
        assert s["onnx"]["opset"] == (19 if precision == "int8" else 17)
        cache = os.path.join(engines_onnx_dir, "model.int8.calib.cache")
        if precision == "int8":   # the cache the Q/DQ model cites; FP32/FP16 engines have none
            assert s["calibration"]["cache_sha256"] == sha256(cache)
            assert s["calibration"]["manifest_sha256"] == sha256(mf.sidecar(cache))
        else:
            assert s["calibration"] is None
        assert s["tensorrt"]["flavour"] == "tensorrt_rtx" and s["tensorrt"]["version"] == r.manifest.stage[
            "tensorrt"]["version"] and s["tensorrt"]["features"]["strongly_typed"]
        assert s["cuda"]["version"] == "13"
        assert s["device"]["aot_compute_capabilities"] == ["8.6", "8.9", "12.0"]
        assert s["target"] == "rtx" and s["precision"] == precision and s["network"]["strongly_typed"]
        assert s["batch_profile"]["shapes"]["input"] == {"min": [1, 3, 56, 56], "opt": [8, 3, 56, 56],
                                                         "max": [32, 3, 56, 56]}
        assert s["workspace_mib"] == 2048 and s["build_s"] > 0
        assert s["engine_bytes"] == os.path.getsize(r.engine_path) == m.artifact["bytes"]
        assert m.preprocessing == parent.preprocessing and m.label_names == parent.label_names
        assert len(m.label_names) == 200
        assert s["layers"] == r.layers.to_dict() and "summary" in s
        assert os.path.isfile(r.log_path) and "Layers:" in r.log_text


def test_layer_precisions_from_the_build_log(built):
    _, results = built
    for precision, dtype in (("fp32", "Float"), ("fp16", "Half"), ("int8", "Int8")):
        layers = results[precision].layers
        assert layers.source == "tensorrt-rtx-log" and layers.total > 50
        # every convolution of the test model runs in the requested precision, inputs and weights
        assert layers.conv_layers >= 50
        assert layers.conv_input_precision == {dtype: layers.conv_layers}, precision
        assert layers.conv_weight_precision == {dtype: layers.conv_layers}, precision
        assert layers.by_output_precision.get(dtype, 0) > 0
        assert parse_layers_log(results[precision].log_text) == layers
    assert results["fp32"].layers.by_output_precision.get("Int8", 0) == 0
    # the Concat checks the calibration stage relies on: counts are recorded, FP32 ones are all Float
    assert len(results["fp32"].layers.concat_non_int8) > 0
    assert all(c["dtype"] == "Float" for c in results["fp32"].layers.concat_non_int8)
    assert isinstance(results["int8"].layers.reformat_layers, int)


def test_int8_weights_are_several_times_smaller(built):
    """The INT8 plan stores ~1/4 of the FP32 weight bytes (FP16 ~1/2). On this 1 M-parameter model
    the plan file itself is dominated by generated kernel code (the INT8 plan has more kernels),
    so the file-size comparison is made on the full-size Inception-v4 (docs/engines.md)."""
    _, results = built
    w = {p: r.layers.weights_bytes for p, r in results.items()}
    assert w["fp32"] / w["int8"] > 2.5 and 1.6 < w["fp32"] / w["fp16"] < 2.4, w
    size = {p: r.manifest.stage["engine_bytes"] for p, r in results.items()}
    assert size["fp16"] < size["fp32"], size


def test_summary_shows_each_engine(built):
    out, _ = built
    text = summarize(out)
    for precision in ("fp32", "fp16", "int8"):
        assert "rtx %s:" % precision in text
    assert "TensorRT-RTX" in text


def test_rebuild_is_skipped_while_up_to_date(built, engines_onnx_dir):
    out, results = built
    before = os.stat(results["fp16"].engine_path).st_mtime_ns
    again = build_engine(engines_onnx_dir, "rtx", "fp16", os.path.join(out, "engines"), force=False, progress=False)
    assert again.skipped and os.stat(again.engine_path).st_mtime_ns == before
    assert again.layers == results["fp16"].layers


def _with_manifest(path, m):
    mf.write(dataclasses.replace(m, artifact={}, created=""), str(path))


def test_a_failing_build_leaves_nothing(tmp_path, engines_onnx_dir, monkeypatch):
    # 1. broken input: a truncated file, and a model TensorRT's ONNX parser rejects (unknown op)
    import onnx
    from onnx import TensorProto, helper

    m = mf.read(os.path.join(engines_onnx_dir, "model.onnx"))
    (tmp_path / "truncated").mkdir()
    data = open(os.path.join(engines_onnx_dir, "model.onnx"), "rb").read()
    (tmp_path / "truncated" / "model.onnx").write_bytes(data[: len(data) // 3])
    _with_manifest(tmp_path / "truncated" / "model.onnx", m)
    with pytest.raises(UserError, match="not a readable ONNX model"):
        build_engine(str(tmp_path / "truncated"), "rtx", "fp32", str(tmp_path / "out"), progress=False)
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 3, 56, 56])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 200])])
    (tmp_path / "unknown_op").mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              str(tmp_path / "unknown_op" / "model.onnx"))
    _with_manifest(tmp_path / "unknown_op" / "model.onnx", m)
    with pytest.raises(UserError, match="ONNX parser rejected .*NoSuchOp"):
        build_engine(str(tmp_path / "unknown_op"), "rtx", "fp32", str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()

    # 2. a failure while writing: no engine appears, and an earlier engine stays as it was
    good = build_engine(engines_onnx_dir, "rtx", "fp16", str(tmp_path / "out2"), progress=False,
                        compute_capabilities=["8.6"])
    before = sha256(good.engine_path), sha256(mf.sidecar(good.engine_path))

    def broken_write_json(path, obj):
        raise OSError("disk full")

    monkeypatch.setattr(builder.atomic, "write_json", broken_write_json)
    with pytest.raises(OSError, match="disk full"):
        build_engine(engines_onnx_dir, "rtx", "fp16", str(tmp_path / "out2"), progress=False,
                     compute_capabilities=["8.9"])
    assert (sha256(good.engine_path), sha256(mf.sidecar(good.engine_path))) == before
    assert sorted(os.listdir(os.path.dirname(good.engine_path))) == ["model.engine", "model.engine.json",
                                                                      "model.engine.log"]
    with pytest.raises(OSError):
        build_engine(engines_onnx_dir, "rtx", "fp32", str(tmp_path / "out3"), progress=False,
                     compute_capabilities=["8.6"])
    assert [files for _, _, files in os.walk(str(tmp_path / "out3")) if files] == []


def test_missing_artifact_and_opset_ceiling(tmp_path, engines_onnx_dir):
    only_fp32 = tmp_path / "onnx"
    only_fp32.mkdir()
    for name in ("model.onnx", "model.onnx.json"):
        shutil.copy(os.path.join(engines_onnx_dir, name), str(only_fp32 / name))
    with pytest.raises(UserError, match="model.int8.onnx not found .* run make calibrate first"):
        build_engine(str(only_fp32), "rtx", "int8", str(tmp_path / "out"))
    with pytest.raises(UserError, match="is a onnx-fp16 artifact"):
        build_engine(os.path.join(engines_onnx_dir, "model.fp16.onnx"), "rtx", "int8", str(tmp_path / "out"))
    low = dataclasses.replace(resolve_target("rtx"), max_opset=17)
    with pytest.raises(UserError, match="opset 19"):
        build_engine(engines_onnx_dir, low, "int8", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_mismatched_engines_are_refused(built):
    _, results = built
    m = mf.read(results["int8"].engine_path, expect_kind="engine")
    live = trt_api.import_tensorrt("tensorrt_rtx")
    compat.check_engine_compat(m, live, device_cc=(8, 9), device_name="RTX 4090")
    compat.check_engine_compat(m, live)                                   # GPU unknown: version checks only
    with pytest.raises(UserError, match="built ahead of time for compute capability 8.6/8.9/12.0, not for RTX 2080"):
        compat.check_engine_compat(m, live, device_cc=(7, 5), device_name="RTX 2080")
    other = trt_api.TrtApi(module=live.module, flavour="tensorrt_rtx", version="1.8.0.1")
    with pytest.raises(UserError, match="loads only in the TensorRT that built it"):
        compat.check_engine_compat(m, other, device_cc=(8, 9))
    trt10 = trt_api.from_module(api_surface.stand_in(json.load(open(os.path.join(
        os.path.dirname(__file__), "data", "trt_api", "tensorrt-10.13.json"))), "tensorrt"))
    with pytest.raises(UserError, match="TensorRT-RTX"):
        compat.check_engine_compat(m, trt10)
    # a TensorRT engine built on an Orin (8.7), loaded elsewhere
    jetson = dataclasses.replace(m, stage=dict(m.stage, tensorrt={"flavour": "tensorrt", "version": trt10.version,
                                                                  "label": trt10.label},
                                               device={"builder_device": "Orin", "compute_capability": "8.7",
                                                       "hardware_compatibility": "none"}))
    compat.check_engine_compat(jetson, trt10, device_cc=(8, 7))
    with pytest.raises(UserError, match="built for Orin \\(compute capability 8.7\\) and cannot run on A10"):
        compat.check_engine_compat(jetson, trt10, device_cc=(8, 6), device_name="A10")
    ampere_plus = dataclasses.replace(jetson, stage=dict(jetson.stage, device=dict(
        jetson.stage["device"], compute_capability="8.0", hardware_compatibility="ampere_plus")))
    compat.check_engine_compat(ampere_plus, trt10, device_cc=(9, 0))
    with pytest.raises(UserError, match="Ampere or newer"):
        compat.check_engine_compat(ampere_plus, trt10, device_cc=(7, 5))
    with pytest.raises(UserError, match="not an engine"):
        compat.check_engine_compat(dataclasses.replace(m, kind="onnx"), live)


def test_build_command(tmp_path, engines_onnx_dir):
    cmd = [sys.executable, "-m", "inception_deploy.pipeline", "build", "--onnx-dir", engines_onnx_dir, "--target", "tensorrt-rtx",
           "--precision", "fp16", "--out", str(tmp_path), "--compute-capabilities", "8.6", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=paths.REPO_ROOT)
    assert res.returncode == 0, res.stderr
    assert "target tensorrt-rtx -> rtx" in res.stdout and "engine built: rtx fp16:" in res.stdout
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=paths.REPO_ROOT)
    assert res.returncode == 0 and "engine up to date" in res.stdout, res.stdout + res.stderr
    res = subprocess.run(cmd + ["--precision", "fp32", "--dla-core", "0"], capture_output=True, text=True,
                         cwd=paths.REPO_ROOT)
    assert res.returncode == 2 and res.stderr.startswith("error: target rtx has no DLA"), res.stderr


def test_manifests_name_their_parent_relative_to_themselves(built, engines_onnx_dir, tmp_path):
    """A manifest's parent path means something wherever the two files are copied together."""
    out, results = built
    m = results["int8"].manifest
    assert not os.path.isabs(m.parent["file"]) and not m.parent["file"].startswith(("build/", "/tmp"))
    assert mf.parent_path(m, results["int8"].engine_path) == os.path.join(engines_onnx_dir, "model.int8.onnx")
    moved = tmp_path / "copy"
    shutil.copytree(out, str(moved / "run"))
    shutil.copytree(engines_onnx_dir, str(moved / os.path.basename(engines_onnx_dir)))
    rel = os.path.relpath(results["int8"].engine_path, out)
    here = str(moved / "run" / rel)
    assert mf.parent_path(mf.read(here), here) == os.path.normpath(
        str(moved / os.path.basename(engines_onnx_dir) / "model.int8.onnx"))


def test_softmax_engine_for_deepstream_is_a_real_build(tmp_path, engines_onnx_dir):
    """--softmax: TensorRT-RTX builds the network with a SoftMax appended over the classes; the engine
    outputs FP32 'probabilities', lives in <precision>-softmax/, and its manifest says so."""
    r = build_engine(engines_onnx_dir, "rtx", "int8", str(tmp_path), progress=False, softmax=True,
                     compute_capabilities=["8.6"])
    assert r.engine_path.endswith(os.path.join("int8-softmax", "model.engine"))
    m = mf.read(r.engine_path, expect_kind="engine")
    assert m.io["output"]["name"] == "probabilities" and m.io["output"]["activation"] == "softmax"
    assert m.stage["output"] == {"softmax": True, "name": "probabilities", "replaces": "logits"}
    assert m.stage["build_key"]["softmax"] is True
    # the network has the Softmax layer; TensorRT-RTX fuses it with the bias add into one generated
    # kernel (max-reduce, subtract, exp, sum, divide) and the plan's output is FP32 N x 200 probabilities
    assert "[Softmax]" in r.log_text
    assert re.search(r"Name: __myl_\w*Exp\w*Sum\w*Div\w*, LayerType: kgen", r.log_text)
    assert re.search(r"Name: probabilities, IOMode: Output, DataType: Float, Dimensions: \[-1,200\]", r.log_text)


def test_engine_manifests_follow_the_schema(built, validate_document):
    """What a C++ app reads to load an engine (pipeline/schemas/manifest.schema.json)."""
    _, results = built
    for r in results.values():
        with open(mf.sidecar(r.engine_path), encoding="utf-8") as f:
            validate_document("manifest", json.load(f))
