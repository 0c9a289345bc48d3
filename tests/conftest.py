"""Shared fixtures: the shared data folders and the trained test model, exported once per session.

The shared data (``../shared/data``) is part of every development and CI machine; a missing
folder is a broken machine, so fixtures fail loudly instead of skipping.
"""
import os

import pytest

from inception_deploy.pipeline import paths

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
    from inception_deploy.pipeline.models.sources import resolve_model

    return resolve_model(test_model_source)


@pytest.fixture(scope="session")
def test_model_onnx(tmp_path_factory, test_model, val_dir) -> str:
    """``model.onnx`` (+ manifest) of the test model, exported once per session as ``make demo`` does."""
    from inception_deploy.pipeline.export import run_export

    out = str(tmp_path_factory.mktemp("test_model_onnx"))
    run_export(test_model, out, val_dir, parity_count=32)
    return os.path.join(out, "model.onnx")


# ---- engines stage (tests/test_engines_*.py) ---------------------------------------------------
@pytest.fixture(scope="session")
def engines_onnx_dir(tmp_path_factory, test_model_onnx, calib_dir) -> str:
    """A folder laid out as export + calibrate leave it: model.onnx, model.fp16.onnx (modelopt
    autocast), model.int8.onnx (modelopt Q/DQ, 32 shared calib images) and a TensorRT calibration
    cache, each with its manifest. modelopt rewrites its input ONNX, so it works on copies."""
    import shutil
    import struct

    import numpy as np
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision
    from modelopt.onnx.quantization import quantize

    from inception_deploy.pipeline import manifest as mf
    from inception_deploy.pipeline.datasets import open_image_folder, select

    out = str(tmp_path_factory.mktemp("engines_onnx"))
    base = os.path.join(out, "model.onnx")
    shutil.copy(test_model_onnx, base)
    shutil.copy(mf.sidecar(test_model_onnx), mf.sidecar(base))
    m = mf.read(base, expect_kind="onnx")
    folder = open_image_folder(calib_dir)
    images = np.concatenate([b.images for b in folder.subset(select(folder.samples, 32, 0))
                             .batches(m.preprocessing_obj(), batch_size=32, progress=None)])
    work = str(tmp_path_factory.mktemp("engines_modelopt"))
    for name in ("in.onnx", "in_fp16.onnx"):
        shutil.copy(base, os.path.join(work, name))
    cache = os.path.join(out, "model.int8.calib.cache")
    names = ["input"] + [n.output[0] for n in onnx.load(base).graph.node]
    with open(cache, "w") as f:
        f.write("TRT-8601-EntropyCalibration2\n")
        f.writelines("%s: %s\n" % (n, struct.pack(">f", 0.02).hex()) for n in names)
    cal_side = mf.write(mf.derive(m, base, "calibration", {"summary": "test calibration cache"}, artifact_path=cache),
                        cache)
    quantize(os.path.join(work, "in.onnx"), quantize_mode="int8", calibration_data=images, calibration_method="max",
             calibration_eps=["cpu"], high_precision_dtype="fp32", output_path=os.path.join(out, "model.int8.onnx"))
    # linked to the cache as the calibrate stage links them (the lineage check follows this link)
    mf.write(mf.derive(m, base, "onnx-int8", {"summary": "test Q/DQ INT8 (modelopt max, 32 images)",
                                              "calibration_cache": os.path.basename(cache),
                                              "calibration_manifest": {"file": os.path.basename(cal_side),
                                                                       "sha256": mf.file_sha256(cal_side)}},
                       artifact_path=os.path.join(out, "model.int8.onnx")),
             os.path.join(out, "model.int8.onnx"))
    fp16 = convert_to_mixed_precision(os.path.join(work, "in_fp16.onnx"), low_precision_type="fp16", keep_io_types=True,
                                      providers=["cpu"])
    onnx.save(fp16, os.path.join(out, "model.fp16.onnx"))
    mf.write(mf.derive(m, base, "onnx-fp16", {"summary": "test FP16 (modelopt autocast)"},
                       artifact_path=os.path.join(out, "model.fp16.onnx")),
             os.path.join(out, "model.fp16.onnx"))
    mf.read(base, expect_kind="onnx")  # the exported ONNX is untouched
    return out



# ---- document schemas (pipeline/schemas/*.schema.json) ----------------------------------------
@pytest.fixture(scope="session")
def validate_document():
    """``validate_document("manifest", data)``: every JSON Schema violation of a document the
    pipeline wrote, listed in the assertion (jsonschema, draft 2020-12; host-side only)."""
    import json

    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    from inception_deploy.pipeline import documents

    schemas = {}
    for name in documents.DOCUMENTS:
        with open(documents.schema_path(name), encoding="utf-8") as f:
            schemas[name] = json.load(f)
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    validators = {name: Draft202012Validator(s, registry=registry) for name, s in schemas.items()}

    def validate(document: str, data) -> None:
        errors = sorted(validators[document].iter_errors(data), key=lambda e: [str(p) for p in e.path])
        assert not errors, "%s: %s" % (document, "; ".join(
            "/".join(str(p) for p in e.path) + ": " + e.message[:200] for e in errors[:5]))
    return validate
