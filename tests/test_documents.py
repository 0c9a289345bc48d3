"""The JSON Schemas of every document type (pipeline/schemas/) against what the pipeline writes.

Manifests are meant to be read by C++ apps and reports by CI jobs, so each document type has a
schema in the repository; these tests check the schemas themselves, their tags against
pipeline.documents, the committed targets and baseline, a real export manifest, and that the
schemas reject what they must. The other document types are validated where a test makes them
(engine, bundle, calibration, report tests: test_*_follow_the_schema*).
"""
import copy
import glob
import json
import os

import pytest
from jsonschema import Draft202012Validator

from inception_deploy.engines import targets
from inception_deploy.pipeline import documents
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import paths


def _schema(name):
    with open(documents.schema_path(name), encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("name", sorted(documents.DOCUMENTS))
def test_each_schema_is_valid_and_carries_the_documents_tag(name):
    schema = _schema(name)
    Draft202012Validator.check_schema(schema)
    tag = documents.DOCUMENTS[name]
    if tag is not None:
        assert schema["properties"]["schema"] == {"const": tag} and schema["$id"] == "urn:inception-deploy:" + \
            tag.split("/", 1)[1]
    assert sorted(os.listdir(documents.SCHEMA_DIR)) == sorted(n + ".schema.json" for n in documents.DOCUMENTS)


def test_every_target_file_and_its_bundle_json_follow_the_schema(validate_document, tmp_path):
    from inception_deploy.engines.targets import _toml_loads

    files = sorted(glob.glob(os.path.join(targets.TARGETS_DIR, "*.toml")))
    assert len(files) >= 9
    for path in files:
        with open(path, encoding="utf-8") as f:
            validate_document("target", _toml_loads(f.read(), path))
        written = targets.write_target_json(targets.load_target_file(path), str(tmp_path))
        with open(written, encoding="utf-8") as f:
            validate_document("target", json.load(f))


def test_the_committed_baselines_follow_the_schema(validate_document):
    files = glob.glob(os.path.join(paths.REPO_ROOT, "benchmarks", "baselines", "*.json"))
    assert files
    for path in files:
        with open(path, encoding="utf-8") as f:
            validate_document("baseline", json.load(f))


def test_the_export_manifest_follows_the_schema(validate_document, test_model_onnx):
    with open(mf.sidecar(test_model_onnx), encoding="utf-8") as f:
        data = json.load(f)
    validate_document("manifest", data)
    validate_document("preprocessing", data["preprocessing"])


def test_the_schemas_reject_what_readers_refuse(validate_document, test_model_onnx):
    """Teeth: each of these is a document the pipeline's readers refuse, and the schema too."""
    with open(mf.sidecar(test_model_onnx), encoding="utf-8") as f:
        good = json.load(f)
    broken = []
    for change in (lambda d: d.update(schema="inception-deploy/manifest@0"), lambda d: d.update(kind="weights"),
                   lambda d: d["model"].pop("label_names"), lambda d: d["model"].update(name="../../x"),
                   lambda d: d["artifact"].update(sha256="not-a-digest"),
                   lambda d: d["preprocessing"].update(mean=[0.5, 0.5]),
                   lambda d: d["stage"].pop("parity"), lambda d: d.update(extra=1)):
        d = copy.deepcopy(good)
        change(d)
        broken.append(d)
    for d in broken:
        with pytest.raises(AssertionError):
            validate_document("manifest", d)
    engine = copy.deepcopy(good)
    engine["kind"] = "engine"      # an engine manifest needs its TensorRT, device and batch-profile record
    with pytest.raises(AssertionError, match="tensorrt"):
        validate_document("manifest", engine)
    target = {"name": "x", "flavour": "tensorrt"}
    with pytest.raises(AssertionError, match="required"):
        validate_document("target", target)


def test_readers_on_the_device_need_no_validator():
    """pipeline.documents checks with the standard library; jsonschema is a test-only dependency."""
    import ast

    for module in ("documents", "manifest"):
        with open(os.path.join(paths.REPO_ROOT, "pipeline", module + ".py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        assert not [n for n in names if n.split(".")[0] in ("jsonschema", "referencing", "fastjsonschema")]


def test_one_sidecar_rule_and_its_inverse():
    for artifact, side in (("d/model.onnx", "d/model.onnx.json"), ("d/model.int8.calib.cache", "d/model.int8.calib.cache.json"),
                           ("d/report.json", "d/report.manifest.json"), ("b/SHA256SUMS", "b/SHA256SUMS.json"),
                           ("e/model.engine", "e/model.engine.json")):
        assert mf.sidecar(artifact) == side and mf.artifact_of(side) == artifact
