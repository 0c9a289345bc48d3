"""Shared fixtures: the shared data folders and the trained test model, exported once per session.

The shared data (``../shared/data``) is part of every development and CI machine; a missing
folder is a broken machine, so fixtures fail loudly instead of skipping.
"""
import os

import pytest

from pipeline import paths

TEST_MODEL_SOURCE = "local-dir:" + paths.TEST_MODEL


def _need(path: str) -> str:
    if not os.path.exists(path):
        pytest.fail(f"shared data missing: {path} (expected ../shared/data beside the repository, "
                    "or set INCEPTION_DEPLOY_DATA)")
    return path


@pytest.fixture(scope="session")
def val_dir() -> str:
    return _need(paths.VAL_DIR)


@pytest.fixture(scope="session")
def calib_dir() -> str:
    return _need(paths.CALIB_DIR)


@pytest.fixture(scope="session")
def photos_dir() -> str:
    return _need(paths.PHOTOS_DIR)


@pytest.fixture(scope="session")
def imagenet_val_dir() -> str:
    return _need(os.path.join(paths.DATA_ROOT, "imagenet-val-100"))


@pytest.fixture(scope="session")
def test_model_source() -> str:
    _need(os.path.join(paths.TEST_MODEL, "model.safetensors"))
    return TEST_MODEL_SOURCE


@pytest.fixture(scope="session")
def test_model(test_model_source):
    """The trained test model (TinyInception, 200 classes, 56x56), fp32, eval mode."""
    from pipeline.models.sources import resolve_model

    return resolve_model(test_model_source)


@pytest.fixture(scope="session")
def test_model_onnx(tmp_path_factory, test_model, val_dir) -> str:
    """``model.onnx`` (+ manifest) of the test model, exported once per session as ``make demo`` does."""
    from pipeline.export import run_export

    out = str(tmp_path_factory.mktemp("test_model_onnx"))
    run_export(test_model, out, val_dir, parity_count=32)
    return os.path.join(out, "model.onnx")
