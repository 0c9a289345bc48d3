"""Pick a runner for an artifact from its manifest kind, and find the artifacts of a run folder.

``onnx`` / ``onnx-fp16`` / ``onnx-int8`` -> ``runtime.backends.onnxruntime.OnnxRuntimeBackend``,
``engine`` -> ``runtime.backends.tensorrt.TensorRTBackend``, a model source -> the PyTorch runner.
The ONNX Runtime and TensorRT runners are the runtime package's (one implementation for the camera
apps and the benchmarks); only the PyTorch runner lives here. No heavy import at module level:
``verify`` on a device host never imports torch.
"""
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.pipeline.frame_io import frame_input_size

PRECISION_OF_KIND = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8"}
RUNNABLE_KINDS = ("onnx", "onnx-fp16", "onnx-int8", "engine")
PRECISION_ORDER = {"fp32": 0, "tf32": 1, "fp16": 2, "bf16": 3, "int8": 4, "fp8": 5, "int4": 6}
BACKEND_ORDER = {"pytorch": 0, "onnxruntime": 1, "tensorrt": 2}


@dataclass
class Candidate:
    """One thing to measure: an artifact (or a PyTorch model source) and how to run it."""

    backend: str                         # pytorch | onnxruntime | tensorrt
    precision: str                       # fp32 | fp16 | int8 ...
    path: str                            # artifact path, or the model source for PyTorch
    manifest: Optional[mf.Manifest] = None
    label: str = ""                      # distinguishes two candidates of the same precision/backend
    options: Dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        base = f"{self.precision}/{self.backend}"
        return f"{base}:{self.label}" if self.label else base

    def sort_key(self) -> Tuple[int, int, str]:
        return (PRECISION_ORDER.get(self.precision, 9), BACKEND_ORDER.get(self.backend, 9), self.id)


def candidate_for(path: str) -> Candidate:
    """A candidate for an artifact file, from its manifest; the artifact must pass the lineage check
    (:func:`pipeline.lineage.check`: its manifest, its parent, its calibration, its graph's I/O)."""
    from inception_deploy.pipeline import lineage

    m = lineage.check(path)
    if m.kind not in RUNNABLE_KINDS:
        raise UserError(f"{path} is a {m.kind!r} artifact; bench and verify run "
                        f"{', '.join(RUNNABLE_KINDS)} artifacts")
    if frame_input_size(m.io):
        raise UserError(f"{path} takes camera frames (its graph holds the preprocessing); bench and verify measure "
                        "the network it was made from (its manifest's parent), and `inception-deploy frame-accuracy` "
                        "measures the frame input against the exact preprocessing")
    if m.kind == "engine":
        precision = str(m.stage.get("precision") or "unknown")
        target = m.stage.get("target")
        return Candidate("tensorrt", precision, path, m, label=str(target) if target else "")
    return Candidate("onnxruntime", PRECISION_OF_KIND[m.kind], path, m)


def pytorch_candidate(source: str, manifest: Optional[mf.Manifest] = None) -> Candidate:
    return Candidate("pytorch", "fp32", source, manifest)


def discover(root: str, kinds: Tuple[str, ...] = RUNNABLE_KINDS) -> List[Candidate]:
    """Every runnable artifact (with a manifest) under ``root``; identical files counted once."""
    if not os.path.isdir(root):
        raise UserError(f"artifact folder not found: {root} (expected a run folder such as build/demo)")
    found: List[Candidate] = []
    seen: Dict[str, str] = {}
    paths = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for n in sorted(names):
            if n.endswith(".json") or n.startswith("."):
                continue
            full = os.path.join(dirpath, n)
            if os.path.isfile(mf.sidecar(full)):
                paths.append(full)
    for path in sorted(paths, key=lambda p: (p.count(os.sep), p)):  # shallowest copy wins
        try:
            m = mf.read(path, verify=False)
        except UserError:
            continue
        if m.kind not in kinds or frame_input_size(m.io):   # frame-input variants: see candidate_for
            continue
        digest = str(m.artifact.get("sha256"))
        if digest in seen:
            continue
        seen[digest] = path
        found.append(candidate_for(path))
    return found


def disambiguate(candidates: List[Candidate]) -> List[Candidate]:
    """Give candidates that share precision/backend a label from their file name."""
    by_id: Dict[str, List[Candidate]] = {}
    for c in candidates:
        by_id.setdefault(c.id, []).append(c)
    for group in by_id.values():
        if len(group) > 1:
            for c in group:
                c.label = (c.label + "-" if c.label else "") + os.path.relpath(c.path)
    return sorted(candidates, key=Candidate.sort_key)


def open_runner(candidate: Candidate, device: str = "cpu", threads: int = 0, cuda_graph: bool = False) -> Any:
    """An inactive runner for ``candidate`` (use it as a context manager).

    Raises :class:`Unsupported` when the backend cannot run on this host (TensorRT without a GPU,
    PyTorch missing on a device host), with the reason from the backend itself.
    """
    if candidate.backend == "pytorch":
        try:
            from inception_deploy.benchmarks.runners.torch_runner import TorchRunner
            from inception_deploy.pipeline.models.sources import resolve_model
        except ImportError as e:
            raise Unsupported(f"the PyTorch runner needs torch and timm ({e}); install the build extra, or run "
                              "verify with an ONNX reference instead") from None
        loaded = resolve_model(candidate.path)
        want = candidate.manifest.model.weights_sha256 if candidate.manifest else None
        if want and loaded.weights_sha256 != want:
            raise UserError(f"PyTorch source {candidate.path} has weights {loaded.weights_sha256[:12]}... but the "
                            f"artifacts were exported from {want[:12]}...; pass the model they came from with --model")
        size = loaded.preprocessing.input_size
        return TorchRunner(loaded.module, device=device, threads=threads, cuda_graph=cuda_graph,
                           input_shape=(3, size[0], size[1]))
    if candidate.backend == "onnxruntime":
        try:
            from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
        except ImportError as e:
            raise Unsupported(f"ONNX Runtime runner unavailable ({e}); install the runtime extra "
                              "(pip install 'inception-deploy[runtime]')") from None
        providers = {"cpu": ["CPUExecutionProvider"],
                     "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}.get(device)  # auto: the backend's
        return OnnxRuntimeBackend(candidate.path, providers=providers, threads=threads)
    if candidate.backend == "tensorrt":
        try:
            from inception_deploy.runtime.backends.tensorrt import TensorRTBackend
        except ImportError as e:
            raise Unsupported(f"TensorRT runner unavailable ({e})") from None
        return TensorRTBackend(candidate.path, cuda_graph=cuda_graph)
    raise UserError(f"unknown backend {candidate.backend!r}")
