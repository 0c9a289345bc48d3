"""The PyTorch runner (the FP32 reference) and the runner factory, on the trained test model and real
val images. The CUDA path cannot run here (no GPU): it is checked to refuse with exit code 3."""
import os

import numpy as np
import pytest
import torch

from inception_deploy.benchmarks.runners.factory import candidate_for, disambiguate, discover, open_runner, pytorch_candidate
from inception_deploy.benchmarks.runners.torch_runner import TorchRunner
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.datasets import open_image_folder, select
from inception_deploy.pipeline.errors import EXIT_UNSUPPORTED, Unsupported, UserError
from inception_deploy.runtime.backends.base import Backend
from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend


@pytest.fixture(scope="module")
def val_batch(test_model, val_dir):
    ds = open_image_folder(val_dir, test_model.label_names)
    ds = ds.subset(select(ds.samples, 24, seed=3))
    return next(ds.batches(test_model.preprocessing, batch_size=24))


def test_torch_runner_matches_the_module_and_onnx_runtime(test_model, test_model_onnx, val_batch):
    size = test_model.preprocessing.input_size
    with TorchRunner(test_model.module, input_shape=(3, size[0], size[1])) as runner:
        assert isinstance(runner, Backend) and runner.active
        assert runner.name == "pytorch-cpu" and runner.max_batch is None and runner.last_gpu_ms is None
        got = runner.infer(val_batch.images)
        one = runner.infer(val_batch.images[:1])
    assert not runner.active
    with torch.no_grad():
        want = test_model.module(torch.from_numpy(val_batch.images)).numpy()
    assert got.dtype == np.float32 and got.shape == (24, test_model.num_classes)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(one[0], want[0], rtol=1e-4, atol=1e-5)
    with OnnxRuntimeBackend(test_model_onnx, providers=["CPUExecutionProvider"]) as ort:
        ref = ort.infer(val_batch.images)
    assert np.abs(got - ref).max() < 1e-3
    assert (got.argmax(1) == ref.argmax(1)).all()
    # trained weights: the outputs depend on the input (random-init Inception would not)
    assert got.std(axis=0).mean() > 0.1
    assert (got.argmax(1) == val_batch.labels).mean() > 0.05


def test_torch_runner_rejects_a_bad_batch_and_stays_usable(test_model, val_batch):
    runner = TorchRunner(test_model.module, input_shape=(3,) + tuple(test_model.preprocessing.input_size))
    with runner:
        with pytest.raises(ValueError, match="float32"):
            runner.infer(val_batch.images.astype(np.float64))
        with pytest.raises(ValueError, match="shape"):
            runner.infer(val_batch.images[:, :, :10])
        assert runner.infer(val_batch.images[:2]).shape == (2, test_model.num_classes)
    runner.close()  # idempotent


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a host without CUDA")
def test_cuda_fp16_and_graphs_refuse_without_a_gpu(test_model):
    with pytest.raises(Unsupported) as e:
        TorchRunner(test_model.module, device="cuda").activate()
    assert e.value.exit_code == EXIT_UNSUPPORTED and "--device cpu" in str(e.value)
    with pytest.raises(Unsupported, match="CUDA GPU"):
        TorchRunner(test_model.module, precision="fp16").activate()
    with pytest.raises(Unsupported, match="CUDA GPU"):
        TorchRunner(test_model.module, cuda_graph=True).activate()
    with pytest.raises(UserError):
        TorchRunner(test_model.module, device="tpu")
    r = TorchRunner(test_model.module, device="auto")
    with r:
        assert r.device == "cpu"


def test_factory_picks_runners_by_manifest_kind(test_model_onnx, tmp_path):
    c = candidate_for(test_model_onnx)
    assert (c.backend, c.precision, c.id) == ("onnxruntime", "fp32", "fp32/onnxruntime")
    runner = open_runner(c)
    assert isinstance(runner, OnnxRuntimeBackend)
    p = pytorch_candidate(c.manifest.model.source, c.manifest)
    runner = open_runner(p)
    assert isinstance(runner, TorchRunner)
    # an engine manifest -> the runtime's TensorRT runner, which cannot run here: Unsupported, reason given
    engine = tmp_path / "rtx" / "model.engine"
    engine.parent.mkdir()
    engine.write_bytes(b"not a real plan")
    m = mf.derive(c.manifest, test_model_onnx, "engine", stage={"precision": "int8", "target": "rtx"})
    mf.write(m, str(engine))
    e = candidate_for(str(engine))
    assert (e.backend, e.precision, e.id) == ("tensorrt", "int8", "int8/tensorrt:rtx")
    with pytest.raises(Unsupported) as err:
        with open_runner(e):
            pass
    assert "ONNX Runtime" in str(err.value)
    # discovery: every artifact with a manifest under a folder, identical files once
    for folder in ("a", "b/c"):
        os.makedirs(tmp_path / folder)
        for name in ("model.onnx", "model.onnx.json"):
            with open(os.path.join(os.path.dirname(test_model_onnx), name), "rb") as src:
                (tmp_path / folder / name).write_bytes(src.read())
    found = disambiguate(discover(str(tmp_path)))
    assert [x.id for x in found] == ["fp32/onnxruntime", "int8/tensorrt:rtx"]
    assert found[0].path == str(tmp_path / "a" / "model.onnx")   # the shallowest copy
    with pytest.raises(UserError, match="report"):
        bad = tmp_path / "r.json"
        bad.write_text("{}")
        mf.write(mf.derive(c.manifest, test_model_onnx, "report", stage={}), str(bad))
        candidate_for(str(bad))
