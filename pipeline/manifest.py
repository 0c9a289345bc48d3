"""The one manifest schema: a JSON sidecar ``<artifact>.json`` beside every artifact
(``report.manifest.json`` for the JSON artifact ``report.json``: :func:`sidecar`).

Every stage writes the same envelope; stage-specific figures go under ``stage``. Derived
artifacts (FP16/INT8 ONNX, engines, bundles) copy ``model``, ``preprocessing`` and ``io`` from
their parent and record the parent's path and sha256, so any artifact can be traced to the
source weights. Device-side: stdlib only, Python 3.8 syntax.

Envelope::

    schema        "inception-deploy/manifest@1"
    kind          onnx | onnx-fp16 | onnx-int8 | calibration | engine | bundle | report
    created       ISO-8601 UTC time
    tool          {"name": "inception-deploy", "version": ...}
    artifact      {"file": <name beside the manifest>, "sha256": ..., "bytes": ...}
    model         {"name", "architecture", "source", "weights_sha256", "num_classes",
                   "label_names", "label_descriptions"}
    preprocessing pipeline.preprocess.Preprocessing.to_dict()
    io            {"input": {"name", "shape", "dtype"}, "output": {...}}
    parent        {"file", "sha256", "kind"} or null
    stage         stage-specific record (versions, parity, calibration, build, ...)
"""
import datetime
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from inception_deploy.pipeline import atomic
from inception_deploy.pipeline import documents
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.hashing import file_sha256
from inception_deploy.pipeline.paths import path_component

if TYPE_CHECKING:  # numpy stays optional: the builder on a device reads manifests without it
    from inception_deploy.pipeline.preprocess import Preprocessing

KINDS = ("onnx", "onnx-fp16", "onnx-int8", "calibration", "engine", "bundle", "report")
# the command that makes an artifact of each kind again (said whenever one is refused)
REGENERATE = {
    "onnx": "re-export it (make export, or inception-deploy export)",
    "onnx-fp16": "re-run calibration (make calibrate, or inception-deploy calibrate --precision fp16)",
    "onnx-int8": "re-run calibration (make calibrate, or inception-deploy calibrate --precision int8)",
    "calibration": "re-run calibration (make calibrate, or inception-deploy calibrate --precision int8)",
    "engine": "rebuild it (make engine, or inception-deploy build ... --force)",
    "bundle": "write the bundle again (make engine TARGET=..., or inception-deploy build --target ...)",
    "report": "re-run the benchmark (make bench, or inception-deploy bench)",
}


def regenerate(kind: Optional[str]) -> str:
    return REGENERATE.get(kind or "", "regenerate it with inception-deploy")


@dataclass
class ModelRecord:
    name: str
    architecture: str
    source: str
    weights_sha256: Optional[str]
    num_classes: int
    label_names: List[str]
    label_descriptions: Dict[str, str] = field(default_factory=dict)


@dataclass
class Manifest:
    kind: str
    artifact: Dict[str, Any]
    model: ModelRecord
    preprocessing: Dict[str, Any]
    io: Dict[str, Any]
    stage: Dict[str, Any] = field(default_factory=dict)
    parent: Optional[Dict[str, Any]] = None
    created: str = ""
    tool: Dict[str, str] = field(default_factory=documents.tool_record)
    schema: str = documents.MANIFEST

    # -- convenience --------------------------------------------------------------------------
    def preprocessing_obj(self) -> "Preprocessing":
        from inception_deploy.pipeline.preprocess import Preprocessing

        return Preprocessing.from_dict(self.preprocessing)

    @property
    def label_names(self) -> List[str]:
        return self.model.label_names

    @property
    def input_name(self) -> str:
        """The graph's input tensor name (``io.input.name``)."""
        return self.io["input"]["name"]

    @property
    def output_name(self) -> str:
        """The graph's output tensor name (``io.output.name``)."""
        return self.io["output"]["name"]

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        order = ["schema", "kind", "created", "tool", "artifact", "model", "preprocessing", "io",
                 "parent", "stage"]
        return {k: d[k] for k in order}

    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = "manifest") -> "Manifest":
        documents.expect_tag(d, documents.MANIFEST, where, "regenerate it with this version of inception-deploy")
        documents.check_all([(d.get("kind") in KINDS, f"unknown kind {d.get('kind')!r}; expected one of "
                                                   f"{', '.join(KINDS)}")], where)
        try:
            model = ModelRecord(**d["model"])
            path_component(model.name, "model name", where)
            return cls(kind=d["kind"], artifact=d["artifact"], model=model, preprocessing=d["preprocessing"],
                       io=d["io"], stage=d.get("stage") or {}, parent=d.get("parent"),
                       created=d.get("created", ""), tool=d.get("tool") or {}, schema=d["schema"])
        except (KeyError, TypeError) as e:
            raise UserError(f"{where}: incomplete manifest ({e}); regenerate it") from None


JSON_ARTIFACT_SIDECAR = ".manifest.json"


def sidecar(artifact_path: str) -> str:
    """The one sidecar rule: ``model.onnx`` -> ``model.onnx.json``; an artifact that is itself JSON
    -> ``<stem>.manifest.json`` (``report.json`` -> ``report.manifest.json``, not ``report.json.json``)."""
    if artifact_path.endswith(".json"):
        return artifact_path[:-len(".json")] + JSON_ARTIFACT_SIDECAR
    return artifact_path + ".json"


def artifact_of(sidecar_path: str) -> str:
    """The inverse of :func:`sidecar` (``report.manifest.json`` -> ``report.json``)."""
    if sidecar_path.endswith(JSON_ARTIFACT_SIDECAR):
        return sidecar_path[:-len(JSON_ARTIFACT_SIDECAR)] + ".json"
    return sidecar_path[:-len(".json")]


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


def artifact_record(path: str) -> Dict[str, Any]:
    return {"file": os.path.basename(path), "sha256": file_sha256(path), "bytes": os.path.getsize(path)}


def write(manifest: Manifest, artifact_path: str) -> str:
    """Fill in the artifact record and time, write the sidecar atomically; returns its path."""
    manifest.artifact = artifact_record(artifact_path)
    manifest.created = manifest.created or now()
    path = sidecar(artifact_path)
    atomic.write_json(path, manifest.to_dict())
    return path


def read(artifact_path: str, expect_kind: Optional[str] = None, verify: bool = True) -> Manifest:
    """Read ``<artifact>.json``; check kind and (with ``verify``) that the artifact's sha256 matches."""
    path = sidecar(artifact_path)
    if not os.path.isfile(path):
        raise UserError(f"no manifest beside {artifact_path} (expected {path}); artifacts are made with their "
                        "manifest by inception-deploy export/calibrate/build")
    data = atomic.read_json(path)
    m = Manifest.from_dict(data, where=path)
    if expect_kind and m.kind != expect_kind and not (expect_kind == "onnx*" and m.kind.startswith("onnx")):
        raise UserError(f"{path} describes a {m.kind!r} artifact, expected {expect_kind!r}")
    if verify:
        if not os.path.isfile(artifact_path):
            raise UserError(f"manifest {path} found but its artifact {artifact_path} is missing")
        digest = file_sha256(artifact_path)
        if digest != m.artifact.get("sha256"):
            raise UserError(f"{artifact_path} does not match its manifest {os.path.basename(path)} (sha256 "
                            f"{digest[:12]}... vs {str(m.artifact.get('sha256'))[:12]}...): one of the two was "
                            f"changed or replaced after they were written together; {regenerate(m.kind)}")
    return m


def derive(parent: Manifest, parent_path: str, kind: str, stage: Dict[str, Any],
           io: Optional[Dict[str, Any]] = None, artifact_path: Optional[str] = None) -> Manifest:
    """A manifest for an artifact made from ``parent`` (same model, preprocessing and labels).

    ``parent.file`` is written relative to the folder of ``artifact_path`` (where the new artifact
    will live), so the link survives copying both to another machine; without ``artifact_path`` it
    is absolute. :func:`parent_path` resolves it either way.
    """
    if artifact_path is not None:
        where = relpath(parent_path, os.path.dirname(os.path.abspath(artifact_path)))
    else:
        where = os.path.abspath(parent_path)
    return Manifest(kind=kind, artifact={}, model=parent.model, preprocessing=dict(parent.preprocessing),
                    io=dict(io or parent.io), stage=stage,
                    parent={"file": where, "sha256": parent.artifact.get("sha256"), "kind": parent.kind})


def relpath(path: str, start: str) -> str:
    """``path`` relative to the folder ``start``, with ``/`` separators (manifests are read anywhere)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(start)).replace(os.sep, "/")


def parent_path(manifest: Manifest, artifact_path: str) -> Optional[str]:
    """The file ``manifest``'s artifact was made from, if it exists: ``parent.file`` resolved against
    the artifact's folder (also an absolute path, or one relative to the current folder as older
    manifests wrote it); ``None`` when the manifest has no parent or the file is not there."""
    name = (manifest.parent or {}).get("file")
    if not name:
        return None
    here = os.path.dirname(os.path.abspath(artifact_path))
    for guess in (os.path.join(here, name), name, os.path.join(here, os.path.basename(name))):
        if os.path.isfile(guess) and os.path.abspath(guess) != os.path.abspath(artifact_path):
            return os.path.normpath(guess)
    return None
