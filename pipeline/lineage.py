"""The one lineage check: an artifact is what its manifest says, and it still fits what it was made from.

Every consumer calls :func:`check` before using an artifact (build, bundle, bench/verify, the
runtime's ``Classifier.load``). Links checked:

1. the artifact's sha256 equals its manifest's (``pipeline.manifest.read``);
2. the parent's sha256 equals the one recorded in ``parent``, where the parent file is present
   (beside the artifact, or at the recorded path);
3. an INT8 Q/DQ ONNX: the calibration manifest it cites has the recorded sha256, the calibration
   cache has the sha256 that manifest records and parses, and both come from the same FP32 ONNX
   (:func:`linked_calibration`); a cache used on its own is checked by :func:`check_cache`;
4. the manifest's class count and label names agree, and for ONNX files the graph's input and
   output names and shapes agree with the manifest (:func:`check_io`).

A broken link is one UserError naming the two ends and the command that regenerates the artifact.
Hashes are memoised per (path, size, mtime, inode), so a chain costs one read of each file.
Device-side: stdlib (+ the stdlib ONNX reader in ``engines.onnx_info``), Python 3.8.
"""
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.frame_io import frame_input_size
from inception_deploy.pipeline.hashing import cached_sha256
from inception_deploy.pipeline.trt_cache import read_cache_with_header


@dataclass
class CacheCheck:
    """A calibration cache that passed :func:`check_cache` (its manifest is None when it has none)."""

    path: str
    sha256: str
    manifest_path: Optional[str]
    manifest_sha256: Optional[str]
    manifest: Optional[mf.Manifest]


def check(path: str, expect_kind: Optional[str] = None, io: bool = True) -> mf.Manifest:
    """Read ``path``'s manifest and check every link of its chain (see the module docstring)."""
    m = mf.read(path, expect_kind=expect_kind)
    check_parent(path, m)
    if m.kind == "onnx-int8":
        linked_calibration(path, m)
    if m.kind == "engine":
        _check_engine_parent_chain(path, m)
    if io:
        check_io(path, m)
    return m


def check_parent(path: str, m: mf.Manifest) -> Optional[str]:
    """Link 2: the parent present here has the sha256 ``m`` records; returns its path (None if absent)."""
    parent_path = mf.parent_path(m, path)
    if parent_path is None:
        return None
    want = str((m.parent or {}).get("sha256"))
    got = cached_sha256(parent_path)
    if got != want:
        raise UserError("%s was made from %s with sha256 %s..., but that file now has sha256 %s...: the %s is older "
                        "than its parent (%s was regenerated since); %s"
                        % (path, parent_path, want[:12], got[:12], m.kind, os.path.basename(parent_path),
                           mf.regenerate(m.kind)))
    return parent_path


def _check_engine_parent_chain(path: str, m: mf.Manifest) -> None:
    """An engine's ONNX parent, when present, must still be consistent itself (an INT8 ONNX with its cache)."""
    parent_path = mf.parent_path(m, path)
    if parent_path is not None and (m.parent or {}).get("kind") == "onnx-int8":
        parent = mf.read(parent_path, expect_kind="onnx-int8", verify=False)
        linked_calibration(parent_path, parent)


def linked_calibration(int8_path: str, m: mf.Manifest) -> Optional[CacheCheck]:
    """Link 3: the calibration cache and manifest an INT8 Q/DQ ONNX cites, checked; None if it cites none."""
    link = m.stage.get("calibration_manifest")
    if not isinstance(link, dict) or not link.get("sha256"):
        return None
    name = m.stage.get("calibration_cache") or link.get("file", "")[:-len(".json")]
    if not isinstance(name, str) or os.path.basename(name) != name or not name:
        raise UserError("%s cites calibration cache %r, which is not a file name beside it; %s"
                        % (mf.sidecar(int8_path), name, mf.regenerate(m.kind)))
    cache = os.path.join(os.path.dirname(os.path.abspath(int8_path)), name)
    side = mf.sidecar(cache)
    if not os.path.isfile(side) or not os.path.isfile(cache):
        raise UserError("%s was calibrated with %s, which is not beside it (expected %s and its manifest); %s"
                        % (int8_path, name, cache, mf.regenerate(m.kind)))
    got = cached_sha256(side)
    if got != link["sha256"]:
        raise UserError("%s and %s come from different calibrate runs: the INT8 model cites calibration manifest "
                        "sha256 %s..., the one beside it has %s...; %s"
                        % (os.path.basename(int8_path), name, str(link["sha256"])[:12], got[:12],
                           mf.regenerate(m.kind)))
    return check_cache(cache, fp32_sha256=(m.parent or {}).get("sha256"), require_manifest=True)


def check_cache(cache: str, fp32_sha256: Optional[str] = None, require_manifest: bool = False) -> CacheCheck:
    """A TensorRT calibration cache: it parses, matches its calibration manifest (when it has one,
    required with ``require_manifest``) and was calibrated on the FP32 ONNX ``fp32_sha256``."""

    if not os.path.isfile(cache):
        raise UserError("calibration cache not found: %s (run make calibrate first)" % cache)
    try:
        _, scales = read_cache_with_header(cache)
    except UserError as e:
        raise UserError("%s; %s" % (e, mf.regenerate("calibration"))) from None
    if not scales:
        raise UserError("%s holds no tensor scales; %s" % (cache, mf.regenerate("calibration")))
    side = mf.sidecar(cache)
    if not os.path.isfile(side):
        if require_manifest:
            raise UserError("no calibration manifest beside %s (expected %s): the cache cannot be traced to a "
                            "calibrate run; %s, or name the cache with --calib-cache to use it untraced"
                            % (cache, side, mf.regenerate("calibration")))
        return CacheCheck(cache, cached_sha256(cache), None, None, None)
    cal = mf.read(cache, expect_kind="calibration")
    parent_sha = str((cal.parent or {}).get("sha256"))
    if fp32_sha256 and parent_sha != fp32_sha256:
        raise UserError("%s was calibrated on an FP32 ONNX with sha256 %s..., not on this model's (%s...): the "
                        "cache belongs to another export; %s"
                        % (cache, parent_sha[:12], str(fp32_sha256)[:12], mf.regenerate("calibration")))
    return CacheCheck(cache, str(cal.artifact.get("sha256")), side, cached_sha256(side), cal)


def check_io(path: str, m: mf.Manifest) -> None:
    """Link 4: labels, class count and (ONNX) the graph's input/output names and shapes fit the manifest."""
    names = m.model.label_names
    if not isinstance(names, list) or len(names) != m.model.num_classes:
        raise UserError("%s lists %d label names for %s classes: the labels do not belong to this model; %s"
                        % (mf.sidecar(path), len(names) if isinstance(names, list) else 0, m.model.num_classes,
                           mf.regenerate(m.kind)))
    want_in, want_out = _manifest_tensor(m, "input"), _manifest_tensor(m, "output")
    frame = frame_input_size(m.io)      # a model with its preprocessing in the graph takes (N, H, W, 3) frames
    pre_chw = [frame[0], frame[1], 3] if frame else [3] + [int(v) for v in m.preprocessing.get("input_size", [])]
    fix = "the manifest does not belong to this model; use the .json written with it, or %s" % mf.regenerate(m.kind)
    if m.kind.startswith("onnx"):
        _check_graph(path, m, want_in[0], want_out[0], pre_chw, fix)
    elif m.kind == "engine":
        shapes = (m.stage.get("batch_profile") or {}).get("shapes") or {}
        for name, profile in shapes.items():
            if name != want_in[0] or list(profile.get("opt", []))[1:] != pre_chw:
                raise UserError("%s was built for input %r of shape %s, but its manifest describes %r (N, %s): %s"
                                % (path, name, profile.get("opt"), want_in[0], ", ".join(map(str, pre_chw)), fix))
    if want_in[1] and [_int(d) for d in want_in[1][1:]] != pre_chw:
        raise UserError("%s: io.input.shape %s contradicts the model's input size %s: %s"
                        % (mf.sidecar(path), want_in[1], pre_chw, fix))


def _check_graph(path: str, m: mf.Manifest, input_name: str, output_name: str, pre_chw: List[int],
                 fix: str) -> None:
    from inception_deploy.engines.onnx_info import graph_io

    inputs, outputs = graph_io(path)
    if len(inputs) != 1 or not outputs:
        raise UserError("%s has %d inputs and %d outputs; expected one image input and a logits output"
                        % (path, len(inputs), len(outputs)))
    got_in, got_out = inputs[0], outputs[0]
    if len(got_in.shape) != 4 or [_int(d) for d in got_in.shape[1:]] != pre_chw:
        raise UserError("%s takes inputs %s but its manifest describes (N, %s): %s"
                        % (path, got_in.shape, ", ".join(map(str, pre_chw)), fix))
    classes = got_out.shape[-1] if got_out.shape else None
    if isinstance(classes, int) and classes != m.model.num_classes:
        raise UserError("%s outputs %d classes but its manifest lists %d: %s" % (path, classes, m.model.num_classes, fix))
    if got_in.name != input_name or got_out.name != output_name:
        raise UserError("%s has input %r and output %r but its manifest names %r and %r: %s"
                        % (path, got_in.name, got_out.name, input_name, output_name, fix))


def _manifest_tensor(m: mf.Manifest, which: str) -> Tuple[str, List[Any]]:
    record = (m.io or {}).get(which) or {}
    if not isinstance(record, dict) or not record.get("name"):
        raise UserError("%s has no io.%s record; %s" % (m.artifact.get("file", "manifest"), which,
                                                        mf.regenerate(m.kind)))
    shape = record.get("shape")
    return str(record["name"]), list(shape) if isinstance(shape, list) else []


def _int(value: Any) -> Any:
    return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else value


def calibration_manifests(paths: List[str], weights_sha256: Optional[str]) -> Dict[str, mf.Manifest]:
    """Every ``calibration`` manifest of the model (same weights) in the folders of ``paths`` and of
    their parents: where bench/verify look for the images a model was calibrated on."""
    folders = []
    for p in paths:
        folders.append(os.path.dirname(os.path.abspath(p)))
        try:
            parent = mf.parent_path(mf.read(p, verify=False), p)
        except UserError:
            parent = None
        if parent:
            folders.append(os.path.dirname(os.path.abspath(parent)))
    found: Dict[str, mf.Manifest] = {}
    for folder in sorted(set(folders)):
        for name in sorted(os.listdir(folder)):
            side = os.path.join(folder, name)
            if not name.endswith(".json") or name.startswith(".") or side in found:
                continue
            try:
                cal = mf.read(mf.artifact_of(side), expect_kind="calibration", verify=False)
            except UserError:
                continue
            if cal.model.weights_sha256 == weights_sha256:
                found[side] = cal
    return found
