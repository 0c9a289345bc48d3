"""The peer comparison's own parts: the TensorRT usability check and an ONNX Runtime peer run as the
comparison runs it (its own process, calibration fed in strides)."""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from inception_deploy.pipeline import paths
from tools import compare_quantizers as cq


def _qdq_model(path: str, zero_point: np.ndarray) -> str:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    inits = [numpy_helper.from_array(np.asarray(0.1, np.float32), "s"), numpy_helper.from_array(zero_point, "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 19)])
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("zero_point,expected", [
    (np.asarray(0, np.int8), ""),
    (np.asarray(0, np.uint8), "2 UINT8 Q/DQ"),
    (np.asarray(3, np.int8), "2 non-zero zero points"),
])
def test_tensorrt_reads_only_signed_symmetric_qdq_as_written(tmp_path, zero_point, expected):
    assert cq.why_not_tensorrt(_qdq_model(str(tmp_path / "m.onnx"), zero_point)) == expected


def test_ort_peer_calibrates_in_strides_in_its_own_process(tmp_path, test_model_onnx, calib_dir):
    """ONNX Runtime's quantize_static fed 50 images in strides of 25 (its histogram calibrators keep
    every batch otherwise): signed INT8, symmetric, every Conv quantized, runs in ORT."""
    from inception_deploy.pipeline import manifest as mf
    from inception_deploy.pipeline.datasets import open_image_folder, select

    pre = mf.read(test_model_onnx).preprocessing_obj()
    folder = open_image_folder(calib_dir)
    images = np.concatenate([b.images for b in folder.subset(select(folder.samples, 50, 0)).batches(pre, 50)])
    npy = str(tmp_path / "calib.npy")
    np.save(npy, images)
    out = str(tmp_path / "ort.onnx")
    res = subprocess.run([sys.executable, os.path.join(paths.REPO_ROOT, "tools", "compare_quantizers.py"),
                          "--peer", "ORT Entropy", "--onnx", test_model_onnx, "--images", npy, "--input", "input",
                          "--out", out], capture_output=True, text=True, cwd=paths.REPO_ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout.strip().splitlines()[-1])["seconds"] > 0
    assert cq.why_not_tensorrt(out) == ""
    model = onnx.load(out)
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(producers[n.input[0]].op_type == "DequantizeLinear" for n in convs)
    from inception_deploy.calibration.evaluate import predict
    assert np.isfinite(predict(out, images[:4])).all()
