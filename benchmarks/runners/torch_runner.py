"""The PyTorch runner: the FP32 reference every other backend is compared with.

Same interface as ``runtime.backends.base.Backend``: ``activate()``, ``infer(batch NCHW float32)
-> logits float32``, ``close()``, a context manager, attributes ``name``, ``max_batch`` and, on
CUDA, ``last_gpu_ms`` (CUDA-event time of the forward pass alone; end-to-end time measured by the
caller includes the host->device and device->host copies).

On CUDA it can also run FP16 weights and replay a captured CUDA graph per batch size (static
input/output buffers, pinned host staging), the way a latency-bound deployment would. Only the
CPU path has been executed on the development machines (no GPU there); the CUDA path follows
PyTorch's documented ``torch.cuda.graphs`` recipe (warm-up on a side stream, capture, replay).
"""
from typing import Any, Dict, Optional, Tuple

import numpy as np

from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.runtime.backends.base import Backend

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "fp16")


class TorchRunner(Backend):
    """Run a ``torch.nn.Module`` classifier on numpy batches (``name``: ``pytorch-cpu`` / ``pytorch-cuda``)."""

    def __init__(self, module: Any, device: str = "cpu", precision: str = "fp32", cuda_graph: bool = False,
                 threads: int = 0, input_shape: Optional[Tuple[int, int, int]] = None) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape) if input_shape else None  # type: ignore[assignment]
        if device not in DEVICES:
            raise UserError(f"device {device!r} is not one of {', '.join(DEVICES)}")
        if precision not in PRECISIONS:
            raise UserError(f"PyTorch runner precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.module = module
        self.requested_device = device
        self.precision = precision
        self.cuda_graph = cuda_graph
        self.threads = threads
        self.device = "cpu"
        self.name = "pytorch"
        self.max_batch = None           # no limit of its own
        self.last_gpu_ms = None
        self._torch: Any = None
        self._graphs: Dict[int, Any] = {}

    @classmethod
    def from_source(cls, source: str, **kwargs: Any) -> "TorchRunner":
        """Load a model source (timm name, ``local-dir:PATH``, checkpoint) as ``resolve_model`` does."""
        from inception_deploy.pipeline.models.sources import resolve_model

        return cls(resolve_model(source).module, **kwargs)

    # -- lifecycle ----------------------------------------------------------------------------
    def _activate(self) -> None:
        import torch

        self._torch = torch
        cuda = torch.cuda.is_available()
        if self.requested_device == "cuda" and not cuda:
            raise Unsupported("PyTorch runner asked for CUDA but torch.cuda.is_available() is False on this host "
                              f"(torch {torch.__version__}); use --device cpu")
        wants_cuda = self.requested_device == "cuda" or (self.requested_device == "auto" and cuda)
        self.device = "cuda" if wants_cuda else "cpu"
        if self.device == "cpu" and (self.precision != "fp32" or self.cuda_graph):
            raise Unsupported("FP16 and CUDA-graph replay of the PyTorch runner need a CUDA GPU; this host has none")
        if self.threads:
            torch.set_num_threads(self.threads)
        module = self.module.eval().to(self.device)
        if self.precision == "fp16":
            module = module.half()
        self.module = module
        self.name = "pytorch-" + self.device

    def _close(self) -> None:
        self._graphs.clear()
        if self.device == "cuda":
            self._torch.cuda.empty_cache()

    def describe(self) -> Dict[str, Any]:
        torch = self._torch
        d: Dict[str, Any] = {"runner": "pytorch", "device": self.device, "precision": self.precision,
                             "cuda_graph": self.cuda_graph}
        if torch is not None:
            d["torch"] = torch.__version__
            d["threads"] = torch.get_num_threads()
            if self.device == "cuda":
                d["gpu"] = torch.cuda.get_device_name()
        return d

    # -- inference ----------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        if self.device == "cpu":
            with torch.inference_mode():
                out = self.module(torch.from_numpy(np.ascontiguousarray(batch)))
            return _logits(out).float().numpy()
        if self.cuda_graph:
            return self._infer_graph(batch)
        return self._infer_cuda(batch)

    def _infer_cuda(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch)).pin_memory().to(self.device, non_blocking=True)
            x = x.to(dtype)
            start.record()
            y = _logits(self.module(x))
            end.record()
            out = y.float().to("cpu")
        torch.cuda.synchronize()
        self.last_gpu_ms = float(start.elapsed_time(end))
        return out.numpy()

    def _infer_graph(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        n = int(batch.shape[0])
        g = self._graphs.get(n)
        if g is None:
            g = self._graphs[n] = self._capture(tuple(batch.shape))
        g["host_in"].copy_(torch.from_numpy(batch))
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        g["dev_in"].copy_(g["host_in"], non_blocking=True)
        start.record()
        g["graph"].replay()
        end.record()
        g["host_out"].copy_(g["dev_out"], non_blocking=True)
        torch.cuda.synchronize()
        self.last_gpu_ms = float(start.elapsed_time(end))
        return g["host_out"].numpy().copy()

    def _capture(self, shape: Any) -> Dict[str, Any]:
        """Capture one forward pass at ``shape`` (static buffers; a new batch size is a new graph)."""
        torch = self._torch
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        dev_in = torch.zeros(shape, dtype=torch.float32, device=self.device)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(3):  # warm-up outside the capture (cuDNN autotuning, lazy allocations)
                _logits(self.module(dev_in.to(dtype)))
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            dev_out = _logits(self.module(dev_in.to(dtype))).float()
        return {"graph": graph, "dev_in": dev_in, "dev_out": dev_out,
                "host_in": torch.empty(shape, dtype=torch.float32).pin_memory(),
                "host_out": torch.empty(tuple(dev_out.shape), dtype=torch.float32).pin_memory()}


def _logits(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out
