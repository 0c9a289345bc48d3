"""The calibrate stage end to end on the trained test model and the shared calib/ and val/ images.

Every method's Q/DQ graph is run by ONNX Runtime and built by TensorRT-RTX (the engines stage's
builder, CPU-only build); the budget search must exclude the one layer whose range is broken on
purpose; calibrating on evaluation files is refused.
"""
import json
import os
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from inception_deploy.pipeline import trt_cache
from inception_deploy.calibration import data as cdata
from inception_deploy.calibration import methods, qdq, stage
from inception_deploy.calibration.stats import ActivationStats
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.cli import main
from inception_deploy.pipeline.hashing import file_sha256
from inception_deploy.pipeline.errors import UserError

CALIB_COUNT = 64          # below the 300 recommended (warned about): keeps the tests fast
EVAL_COUNT = 200


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, test_model_onnx):
    return str(tmp_path_factory.mktemp("calibrate"))


@pytest.fixture(scope="module")
def calibrated(run_dir, test_model_onnx, calib_dir, val_dir):
    parent_sha = file_sha256(test_model_onnx)
    out = stage.run(stage.Options(onnx_path=test_model_onnx, images=calib_dir, precisions=("int8", "fp16"),
                                  count=CALIB_COUNT, batch_size=32, out_dir=run_dir, eval_images=val_dir,
                                  eval_count=EVAL_COUNT))
    assert file_sha256(test_model_onnx) == parent_sha, "a tool wrote into the parent model.onnx"
    return out


def test_artifacts_and_manifests(calibrated, run_dir, test_model_onnx, calib_dir):
    assert calibrated.int8 == os.path.join(run_dir, "model.int8.onnx")
    assert calibrated.fp16 == os.path.join(run_dir, "model.fp16.onnx")
    assert calibrated.cache == os.path.join(run_dir, "model.int8.calib.cache")
    parent = mf.read(test_model_onnx, expect_kind="onnx")
    int8 = mf.read(calibrated.int8, expect_kind="onnx-int8")
    fp16 = mf.read(calibrated.fp16, expect_kind="onnx-fp16")
    cal = mf.read(calibrated.cache, expect_kind="calibration")
    for m in (int8, fp16, cal):
        assert m.parent["sha256"] == parent.artifact["sha256"]
        assert m.preprocessing == parent.preprocessing and m.stage["summary"]
    # the int8 manifest cites the cache and the calibration manifest by sha256
    assert int8.stage["calibration_cache"] == "model.int8.calib.cache"
    assert int8.stage["calibration_manifest"]["sha256"] == file_sha256(mf.sidecar(calibrated.cache))
    assert int8.stage["method"] == stage.DEFAULT_METHOD and int8.stage["high_precision_dtype"] == "fp32"
    # the calibration manifest lists every file with its sha256, the seed and the preprocessing
    files = cal.stage["files"]
    assert len(files) == cal.stage["images"] == CALIB_COUNT and cal.stage["seed"] == 0
    first = files[0]
    assert file_sha256(os.path.join(calib_dir, first["path"])) == first["sha256"]
    assert any("< 300" in w for w in cal.stage["warnings"])
    # drift was measured against FP32 on val images
    for m in (int8, fp16):
        assert m.stage["drift"]["images"] == EVAL_COUNT
    assert int8.stage["evaluation"]["fp32"]["top1"] > 20.0       # the trained test model, not noise


def test_int8_graph_is_explicit_qdq_as_specified(calibrated, test_model_onnx):
    model = onnx.load(calibrated.int8)
    onnx.checker.check_model(model, full_check=True)
    graph = qdq.inspect_qdq(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert graph.opset >= 19 and len(graph.activation_scales) > 20
    assert "Conv" in {n.op_type for n in model.graph.node}
    # per-channel weights: one scale per output channel; per-tensor activations: one scale
    producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        wdq = producers[node.input[1]]
        assert wdq.op_type == "DequantizeLinear"
        weight = inits[wdq.input[0]]              # stored as INT8, read through a DequantizeLinear only
        assert weight.dtype == np.int8 and inits[wdq.input[1]].shape == (weight.shape[0],)
        adq = producers[node.input[0]]
        assert adq.op_type == "DequantizeLinear" and inits[adq.input[1]].size == 1
    assert graph.int8_weights == graph.weight_quantizers > 20
    # INT8 weights make the file a fraction of the FP32 one (the Q/DQ-over-FP32 form was 1.02x); the
    # classifier (Gemm, 0.3 of this model's 4.0 MB) stays FP32, as modelopt leaves it
    assert os.path.getsize(calibrated.int8) <= 0.35 * os.path.getsize(test_model_onnx)
    # the exported model's metadata (preprocessing, labels for C++ apps) is kept
    parent_meta = {p.key: p.value for p in onnx.load(test_model_onnx).metadata_props}
    assert {p.key: p.value for p in model.metadata_props} == parent_meta
    assert {p.key: p.value for p in onnx.load(calibrated.fp16).metadata_props} == parent_meta
    # high_precision_dtype="fp32": nothing was turned into float16
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    # the activation scales are the cache's (what TensorRT's implicit path would use)
    scales = trt_cache.read_cache(calibrated.cache)
    pooled = set(mf.read(calibrated.int8).stage["maxpool_outputs_quantized"])
    pooled_outputs = {n.output[0] for n in model.graph.node if n.name in pooled}
    for tensor, scale in graph.activation_scales.items():
        if tensor not in pooled_outputs:
            assert scale == pytest.approx(scales[tensor], rel=1e-6), tensor


def test_tensorrt_rtx_keeps_the_int8_graph_in_int8(calibrated):
    layers = mf.read(calibrated.int8).stage["tensorrt_layers"]
    assert layers["status"] == "built", layers
    assert set(layers["conv_input_precision"]) == {"Int8"}
    assert layers["concat_non_int8"] == 0, layers["concat_non_int8_tensors"]
    assert "unexplained" not in layers["reformat_explained"].values(), layers["reformat_explained"]


def test_fp16_model(calibrated):
    model = onnx.load(calibrated.fp16)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    m = mf.read(calibrated.fp16)
    assert m.stage["autocast"]["keep_io_types"] is True
    assert abs(m.stage["drift"]["top1_drop"]) <= 1.0 and m.stage["drift"]["top1_agreement"] > 0.97


@pytest.fixture(scope="module")
def histograms(calibrated, run_dir):
    key = mf.read(calibrated.cache).stage["stats_key"]
    stats = ActivationStats.load(os.path.join(run_dir, ".calibration", "stats-%s.npz" % key[:20]))
    assert stats is not None and stats.key == key and stats.images == CALIB_COUNT
    return stats


@pytest.mark.parametrize("method", methods.METHODS)
def test_every_method_gives_a_qdq_graph_ort_runs_and_tensorrt_builds(method, calibrated, histograms, run_dir,
                                                                    test_model_onnx, tmp_path):
    from inception_deploy.calibration.trt_check import layer_check

    model = onnx.load(test_model_onnx)
    amax = methods.compute_amax(methods.Method.parse(method), histograms.tensors, methods.concat_groups(model))
    images = _few_images(test_model_onnx)
    out = str(tmp_path / "model.int8.onnx")
    result = qdq.quantize_with_scales(test_model_onnx, out, qdq.scales_from_amax(amax), images, "input")
    stage.check_runs(out, images, "input", "logits")
    assert result.unscaled_tensors == [] and result.graph.activation_scales
    parent = mf.read(test_model_onnx)
    mf.write(mf.derive(parent, test_model_onnx, "onnx-int8", {"name": "calibrate", "method": method}), out)
    layers = layer_check(out, str(tmp_path))
    assert layers["status"] == "built", layers
    assert set(layers["conv_input_precision"]) == {"Int8"} and layers["concat_non_int8"] == 0


def _few_images(onnx_path):
    from inception_deploy.pipeline.datasets import open_image_folder, select
    from inception_deploy.pipeline.paths import CALIB_DIR

    pre = mf.read(onnx_path).preprocessing_obj()
    folder = open_image_folder(CALIB_DIR)
    return next(folder.subset(select(folder.samples, 4, 1)).batches(pre, 4)).images


def _single_conv_input(onnx_path):
    """The first ReLU output read by exactly one Conv and by no Concat (the stem's): a range that only
    that Conv depends on, early enough that breaking it costs accuracy, not just agreement."""
    model = onnx.load(onnx_path)
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    candidates = [n.output[0] for n in model.graph.node if n.op_type == "Relu"
                  and [c.op_type for c in consumers.get(n.output[0], [])] == ["Conv"]]
    tensor = candidates[0]
    return tensor, consumers[tensor][0].name


def test_budget_search_excludes_the_layer_it_must(calibrated, histograms, run_dir, test_model_onnx, calib_dir,
                                                  val_dir):
    tensor, conv = _single_conv_input(test_model_onnx)
    broken = histograms.tensors[tensor].amax * 0.02          # clips 98 % of this activation's range
    out = stage.run(stage.Options(onnx_path=test_model_onnx, images=calib_dir, precisions=("int8",),
                                  count=CALIB_COUNT, batch_size=32, out_dir=run_dir, eval_images=val_dir,
                                  eval_count=400, budget="top1=3,top5=3", max_minutes=2.0, trt_check=False,
                                  corrupt_scales={tensor: broken}))
    m = mf.read(out.int8)
    budget = m.stage["budget"]
    assert mf.read(out.cache).stage["stats_reused"] is True            # same model + images: no second pass
    assert not budget["steps"][0]["within"], budget["steps"][0]        # the broken range costs accuracy
    assert out.budget_met is True and budget["met"] is True
    assert conv in budget["excluded"] and len(budget["excluded"]) <= 3, budget["excluded"]
    assert budget["ranking"][0]["node"] == conv
    assert budget["choose_images"] + budget["report_images"] == 400
    assert budget["report_drift"]["top1_drop"] < budget["report_drift_no_exclusion"]["top1_drop"]
    # the excluded Conv reads its input unquantized now
    model = onnx.load(out.int8)
    producers = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == conv)
    assert producers[node.input[0]].op_type != "DequantizeLinear"


def test_calibrating_on_the_evaluation_images_is_refused(val_dir, tmp_path, test_model_onnx):
    with pytest.raises(UserError, match="also evaluation images"):
        cdata.choose_calibration_images(val_dir, None, 50, 0, 8, eval_root=val_dir)
    # the same files copied under other names are caught by content
    wnid = sorted(os.listdir(val_dir))[0]
    copies = tmp_path / "my_calib" / wnid
    copies.mkdir(parents=True)
    for i, name in enumerate(sorted(os.listdir(os.path.join(val_dir, wnid)))[:10]):
        shutil.copy(os.path.join(val_dir, wnid, name), copies / ("copy_%d.JPEG" % i))
    code = main(["calibrate", "--onnx", test_model_onnx, "--images", str(tmp_path / "my_calib"), "--count", "10",
                 "--batch-size", "4", "--eval-images", val_dir, "--out", str(tmp_path / "out")])
    assert code == 2
    assert not (tmp_path / "out" / "model.int8.onnx").exists()


def test_image_count_limits(calib_dir, capsys):
    with pytest.raises(UserError, match="fewer than the batch size 32"):
        cdata.choose_calibration_images(calib_dir, None, 20, 0, 32)
    images = cdata.choose_calibration_images(calib_dir, None, 40, 0, 32)
    assert len(images) == 40 and images.warnings and "warning" in capsys.readouterr().err
    labels = [s.label for s in images.samples]
    assert len(set(os.path.dirname(s.path) for s in images.samples)) == 40     # one per class: balanced
    assert labels == [s.label for s in cdata.choose_calibration_images(calib_dir, None, 40, 0, 32).samples]


def test_bad_budget_and_method_are_user_errors(test_model_onnx, calib_dir, tmp_path):
    assert main(["calibrate", "--onnx", test_model_onnx, "--images", calib_dir, "--accuracy-budget", "top1=x",
                 "--eval-images", calib_dir, "--out", str(tmp_path)]) == 2
    assert main(["calibrate", "--onnx", test_model_onnx, "--images", calib_dir, "--method", "minmax",
                 "--out", str(tmp_path)]) == 2


def test_calibration_manifests_follow_the_schema(calibrated, validate_document):
    for artifact in (calibrated.int8, calibrated.fp16, calibrated.cache):
        with open(mf.sidecar(artifact), encoding="utf-8") as f:
            validate_document("manifest", json.load(f))
