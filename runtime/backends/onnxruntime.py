"""ONNX Runtime backend: the CPU/CI path, and the CUDA execution provider where installed.

Runs FP32, FP16 (I/O kept FP32) and Q/DQ INT8 ONNX files alike. Device-side: numpy +
onnxruntime, Python 3.8.
"""
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.runtime.backends.base import Backend

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def default_providers(available: Sequence[str]) -> List[str]:
    """CUDA execution provider first when this onnxruntime build has it, CPU always as the fallback."""
    return ([CUDA_PROVIDER] if CUDA_PROVIDER in available else []) + [CPU_PROVIDER]


class OnnxRuntimeBackend(Backend):
    """``OnnxRuntimeBackend(onnx_path, providers=None, threads=0)``.

    ``providers``: ONNX Runtime provider names in order of preference (default: CUDA if present,
    else CPU). ``threads``: intra-op threads (0: ONNX Runtime's default, one per core).
    """

    def __init__(self, onnx_path: str, providers: Optional[Sequence[str]] = None, threads: int = 0) -> None:
        super().__init__()
        if not os.path.isfile(onnx_path):
            raise UserError("ONNX file not found: %s (expected a model.onnx written by inception-deploy "
                            "export/calibrate)" % onnx_path)
        self.onnx_path = onnx_path
        self.providers = list(providers) if providers else None
        self.threads = int(threads)
        self.name = "onnxruntime"
        self._session: Any = None

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise Unsupported("onnxruntime is not installed; install it with "
                              "pip install 'inception-deploy[runtime]' (or onnxruntime-gpu)") from None
        available = ort.get_available_providers()
        providers = self.providers or default_providers(available)
        missing = [p for p in providers if p not in available]
        if missing:
            raise Unsupported("ONNX Runtime provider %s is not available in this onnxruntime build (available: %s)"
                              % (missing[0], ", ".join(available)))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if self.threads:
            opts.intra_op_num_threads = self.threads
        try:
            self._session = ort.InferenceSession(self.onnx_path, opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise UserError("ONNX Runtime cannot load %s: %s" % (self.onnx_path, str(e).splitlines()[0])) from None
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise UserError("%s has %d inputs; expected one image input (N, 3, H, W)" % (self.onnx_path, len(inputs)))
        shape = list(inputs[0].shape)
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
            raise UserError("%s input %r has shape %s; expected (N, 3, H, W) float32 with fixed H and W, or "
                            "(N, H, W, 3) uint8 camera frames" % (self.onnx_path, inputs[0].name, shape))
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = (int(shape[1]), int(shape[2]), int(shape[3]))
        self.input_dtype = np.uint8 if inputs[0].type == "tensor(uint8)" else np.float32
        self.max_batch = shape[0] if isinstance(shape[0], int) else None   # None: dynamic batch
        out_shape = list(outputs[0].shape)
        self.num_classes = out_shape[-1] if len(out_shape) == 2 and isinstance(out_shape[-1], int) else None
        used = self._session.get_providers()
        self.name = "onnxruntime-cuda" if CUDA_PROVIDER in used else "onnxruntime-cpu"
        self.last_gpu_ms = None

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        out = self._session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch)})[0]
        return np.asarray(out, dtype=np.float32)

    def _close(self) -> None:
        self._session = None

    def describe(self) -> Dict[str, Any]:
        import onnxruntime as ort

        return {"name": self.name, "onnxruntime": ort.__version__, "providers": self.providers_used,
                "threads": self.threads or "default", "max_batch": self.max_batch}

    @property
    def providers_used(self) -> List[str]:
        return list(self._session.get_providers()) if self._session is not None else []
