"""Runners shared by the runtime and the benchmarks: one interface (:class:`Backend`), two engines.

- :class:`OnnxRuntimeBackend` for ``.onnx`` files (CPU, or ONNX Runtime's CUDA provider);
- :class:`TensorRTBackend` for ``.engine`` plans (TensorRT / TensorRT-RTX through pycuda or cuda-python).

:func:`open_backend` picks by artifact type and never falls back from one to the other.
"""
import os
from typing import Optional, Sequence

from inception_deploy.pipeline.errors import UserError
from inception_deploy.runtime.backends.base import Backend
from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend
from inception_deploy.runtime.backends.tensorrt import TensorRTBackend

ENGINE_EXTENSIONS = (".engine", ".plan", ".trt")
ONNX_EXTENSIONS = (".onnx",)

__all__ = ["Backend", "OnnxRuntimeBackend", "TensorRTBackend", "open_backend", "artifact_type"]


def artifact_type(path: str) -> str:
    """``"engine"`` or ``"onnx"`` from the file name; UserError for anything else."""
    lower = path.lower()
    if lower.endswith(ENGINE_EXTENSIONS):
        return "engine"
    if lower.endswith(ONNX_EXTENSIONS):
        return "onnx"
    raise UserError("%s is neither an engine (%s) nor an ONNX file (.onnx)"
                    % (os.path.basename(path), ", ".join(ENGINE_EXTENSIONS)))


def open_backend(path: str, providers: Optional[Sequence[str]] = None, threads: int = 0,
                 cuda_graph: bool = False, device: int = 0, dla_core: Optional[int] = None) -> Backend:
    """The backend for ``path`` (not yet activated): TensorRT for engines, ONNX Runtime for ONNX.
    ``dla_core`` picks the DLA core a DLA engine runs on (default: the one it was built for)."""
    if artifact_type(path) == "engine":
        return TensorRTBackend(path, cuda_graph=cuda_graph, device=device, dla_core=dla_core)
    return OnnxRuntimeBackend(path, providers=providers, threads=threads)
