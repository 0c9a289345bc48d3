"""``inception-deploy inspect``: ONNX I/O (through Polygraphy), nodes, Q/DQ, the manifest chain; engines
from their manifest, with TensorRT's inspector where a plan can be deserialized and the reason where not."""
import json
import os
import shutil
import subprocess
import sys

from inception_deploy.engines.builder import build_engine
from inception_deploy.pipeline import paths


def run(*args):
    return subprocess.run([sys.executable, "-m", "inception_deploy.pipeline", "inspect", *args], capture_output=True, text=True,
                          cwd=paths.REPO_ROOT)


def test_inspect_onnx_reports_io_nodes_qdq_and_chain(engines_onnx_dir):
    res = run(os.path.join(engines_onnx_dir, "model.int8.onnx"), "--json")
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert r["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 3, 56, 56]}]
    assert r["outputs"][0]["name"] == "logits" and r["opsets"]["ai.onnx"] == 19
    q = r["qdq"]
    assert q["quantize"] == q["dequantize"] == r["nodes_by_type"]["QuantizeLinear"] > 0
    assert q["quantized_weights"] == q["per_channel_scales"] == r["nodes_by_type"]["Conv"] + r["nodes_by_type"].get(
        "Gemm", 0) - (r["nodes_by_type"]["Conv"] + r["nodes_by_type"].get("Gemm", 0) - q["quantized_weights"])
    assert q["per_channel_scales"] > 0 and q["per_tensor_scales"] == q["quantized_activations"]
    assert [c["kind"] for c in r["chain"]] == ["onnx-int8", "onnx"]
    assert all(c["state"] == "sha256 matches its manifest" for c in r["chain"])
    fp32 = json.loads(run(os.path.join(engines_onnx_dir, "model.onnx"), "--json").stdout)
    assert fp32["qdq"]["quantize"] == 0 and fp32["opsets"]["ai.onnx"] == 17
    text = run(os.path.join(engines_onnx_dir, "model.int8.onnx")).stdout
    assert "nodes_by_type:" in text and "per_channel_scales:" in text


def test_inspect_engine_says_why_the_inspector_is_not_available_here(tmp_path, engines_onnx_dir):
    r = build_engine(engines_onnx_dir, "rtx", "fp16", str(tmp_path), progress=False, compute_capabilities=["8.6"])
    res = run(r.engine_path, "--json")
    assert res.returncode == 0, res.stderr
    rec = json.loads(res.stdout)
    assert rec["precision"] == "fp16" and rec["target"] == "rtx" and rec["tensorrt"].startswith("TensorRT-RTX")
    assert rec["layers"]["conv_layers"] > 0 and [c["kind"] for c in rec["chain"]] == ["engine", "onnx-fp16", "onnx"]
    assert rec["inspector"]["available"] is False and "cannot deserialize the plan here" in rec["inspector"]["reason"]


def test_inspect_refuses_bad_files_in_one_line(tmp_path, engines_onnx_dir):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    res = run(str(bad))
    assert res.returncode == 2 and res.stderr.startswith("error:") and len(res.stderr.strip().splitlines()) == 1
    changed = tmp_path / "c"
    shutil.copytree(engines_onnx_dir, str(changed))
    with open(str(changed / "model.onnx"), "ab") as f:
        f.write(b"\x00")
    rec = json.loads(run(str(changed / "model.int8.onnx"), "--json").stdout)
    assert rec["chain"][1]["state"].startswith("CHANGED")
    res = run(str(tmp_path / "missing.onnx"))
    assert res.returncode == 2 and "file not found" in res.stderr
