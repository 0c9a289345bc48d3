"""The one runner interface shared by the runtime (camera apps) and the benchmarks.

A backend turns a preprocessed batch ``(N, 3, H, W) float32`` into logits ``(N, C) float32`` (or,
for a model with the preprocessing in its graph, a batch of camera frames ``(N, H, W, 3) uint8``).
Construction is cheap and never touches the accelerator; :meth:`Backend.activate` loads the
model and allocates what it needs once (sessions, execution contexts, pinned buffers), so a
benchmark can time loading separately from inference. Device-side: numpy only, Python 3.8.
"""
from typing import Any, Dict, Optional, Tuple

import numpy as np


class Backend:
    """Base class: ``activate()``, ``infer(batch)``, ``close()``; a context manager.

    Attributes every backend sets (valid after :meth:`activate`):

    - ``name``: what runs the model, e.g. ``"onnxruntime-cpu"``, ``"onnxruntime-cuda"``, ``"tensorrt"``,
      ``"tensorrt_rtx"``;
    - ``max_batch``: the largest batch :meth:`infer` accepts (``None``: no fixed limit);
    - ``input_name`` / ``output_name``: the model's tensor names;
    - ``input_shape``: ``(3, H, W)`` of one image (``(H, W, 3)`` for a frame-input model), ``input_dtype``
      its numpy type (float32, or uint8 for frames); ``num_classes``: logits per image (``None`` if unknown);
    - ``last_gpu_ms``: GPU time of the last :meth:`infer` from CUDA events, ``None`` where the backend
      has no CUDA stream of its own (ONNX Runtime).

    One instance is not thread-safe: give each thread its own backend (see docs/runtime.md).
    """

    name: str = "backend"
    max_batch: Optional[int] = None
    input_name: str = ""
    output_name: str = ""
    input_shape: Optional[Tuple[int, int, int]] = None
    input_dtype: Any = np.float32
    num_classes: Optional[int] = None
    last_gpu_ms: Optional[float] = None

    def __init__(self) -> None:
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

    def activate(self) -> "Backend":
        """Load the model and allocate buffers; idempotent. Returns ``self``."""
        if not self._active:
            self._activate()
            self._active = True
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """``(N, 3, H, W) float32`` (or ``(N, H, W, 3) uint8`` frames) -> ``(N, C) float32`` logits
        (a new array the caller owns)."""
        if not self._active:
            self.activate()
        self.check_batch(batch)
        return self._infer(batch)

    def close(self) -> None:
        """Free sessions, contexts and buffers; idempotent. The backend can be activated again."""
        if getattr(self, "_active", False):
            self._active = False
            self._close()

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() must not leak pinned memory
        try:
            self.close()
        except Exception:
            pass

    # -- for subclasses ------------------------------------------------------------------------
    def _activate(self) -> None:
        raise NotImplementedError

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        """What ran the model, for reports (versions, providers, device); valid after :meth:`activate`."""
        return {"name": self.name, "max_batch": self.max_batch}

    def check_batch(self, batch: Any) -> None:
        """Raise ValueError naming what was expected unless ``batch`` fits this model."""
        dtype = np.dtype(self.input_dtype)
        layout = "(N, H, W, 3) frames" if dtype == np.uint8 else "(N, 3, H, W)"
        if not isinstance(batch, np.ndarray) or batch.dtype != dtype:
            what = type(batch).__name__ if not isinstance(batch, np.ndarray) else "dtype %s" % batch.dtype
            raise ValueError("expected a %s numpy batch %s, got %s" % (dtype.name, layout, what))
        expected = self.input_shape
        if batch.ndim != 4 or (expected is not None and tuple(batch.shape[1:]) != tuple(expected)):
            want = "(N, %d, %d, %d)" % tuple(expected) if expected is not None else layout
            raise ValueError("expected a batch of shape %s, got %s" % (want, tuple(batch.shape)))
        if batch.shape[0] < 1:
            raise ValueError("expected at least one image in the batch, got an empty batch")
        if self.max_batch is not None and batch.shape[0] > self.max_batch:
            raise ValueError("batch of %d is larger than this model's max batch %d; split it"
                             % (batch.shape[0], self.max_batch))

    def __repr__(self) -> str:
        return "%s(name=%r, max_batch=%r, active=%r)" % (type(self).__name__, self.name, self.max_batch,
                                                       self._active)
