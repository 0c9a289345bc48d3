"""The three Python objects TensorRT calls back during a build: logger, progress monitor, calibrator.

Each subclasses the interface of whichever module was imported (``tensorrt`` or ``tensorrt_rtx``),
so the classes are made per :class:`~engines.trt_api.TrtApi` rather than at import time.
Device-side: stdlib only.
"""
import sys
import time
from typing import Any, Callable, List, Optional, Tuple

from inception_deploy.engines.trt_api import TrtApi
from inception_deploy.pipeline.progress import StatusLine


def stderr_echo(text: str) -> None:
    print(text, file=sys.stderr)


def make_logger(api: TrtApi, echo: Optional[Callable[[str], None]] = None, echo_warnings: bool = True) -> Any:
    """An ``ILogger`` that keeps every message (VERBOSE included: the layer listing is a VERBOSE
    message) and echoes errors, and warnings once each, through ``echo``."""
    trt = api.module
    severity = trt.ILogger.Severity if hasattr(trt.ILogger, "Severity") else trt.ILogger
    echo = echo or stderr_echo
    names = {}
    for n in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"):
        if hasattr(severity, n):
            names[getattr(severity, n)] = n

    class CaptureLogger(trt.ILogger):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.records: List[Tuple[str, str]] = []
            self._warned = set()

        def log(self, sev: Any, msg: str) -> None:
            name = names.get(sev, str(sev))
            self.records.append((name, msg))
            if name in ("INTERNAL_ERROR", "ERROR"):
                echo("tensorrt %s: %s" % (name.lower().replace("_", " "), msg))
            elif name == "WARNING" and echo_warnings and msg not in self._warned:
                self._warned.add(msg)
                echo("tensorrt warning: %s" % msg)

        def text(self) -> str:
            return "\n".join("[%s] %s" % (n, m) for n, m in self.records)

        def errors(self) -> List[str]:
            return [m for n, m in self.records if n in ("INTERNAL_ERROR", "ERROR")]

    return CaptureLogger()


def make_progress_monitor(api: TrtApi, stream: Any = None) -> Any:
    """An ``IProgressMonitor`` drawing the phase path and step count: one redrawn line on a
    terminal, the start of each top-level phase otherwise. Never cancels the build."""
    trt = api.module
    status = StatusLine("build", stream)

    class PhaseMonitor(trt.IProgressMonitor):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.phases: List[List[Any]] = []   # [name, steps, done]
            self.start = time.perf_counter()

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            self.phases.append([phase_name, num_steps, 0])
            if status.tty:
                self._draw(force=True)
            elif len(self.phases) <= 2:
                status.line("%s%s (%.1f s)" % ("  " * (len(self.phases) - 1), phase_name,
                                               time.perf_counter() - self.start))

        def step_complete(self, phase_name: str, step: int) -> bool:
            for phase in reversed(self.phases):
                if phase[0] == phase_name:
                    phase[2] = step + 1
                    break
            if status.tty:
                self._draw()
            return True

        def phase_finish(self, phase_name: str) -> None:
            for i in range(len(self.phases) - 1, -1, -1):
                if self.phases[i][0] == phase_name:
                    del self.phases[i]
                    break
            if self.phases:
                self._draw(force=True)
            else:
                status.clear()

        def _draw(self, force: bool = False) -> None:
            path = " > ".join("%s %d/%d" % (n, d, s) if s else n for n, s, d in self.phases[-3:])
            status.redraw(path[-110:], label="build %.0f s" % (time.perf_counter() - self.start), force=force)

    return PhaseMonitor()


def make_cache_calibrator(api: TrtApi, cache_bytes: bytes, batch_size: int) -> Any:
    """An ``IInt8EntropyCalibrator2`` that serves the calibration stage's cache and no data.

    TensorRT reads the cache first and calibrates only if it lacks a tensor's scale; then
    ``get_batch`` is called, returns ``None`` (no data here) and the build fails: the builder
    reports that the cache does not match the ONNX. The cache TensorRT writes back is kept on
    the object (``written``), never over the calibration stage's file.
    """
    trt = api.module
    base = trt.IInt8EntropyCalibrator2

    class CacheCalibrator(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.asked_for_data = False
            self.written: Optional[bytes] = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: Any, *args: Any) -> None:
            self.asked_for_data = True
            return None

        def read_calibration_cache(self, *args: Any) -> bytes:
            return cache_bytes

        def write_calibration_cache(self, cache: Any, *args: Any) -> None:
            self.written = bytes(cache)

    return CacheCalibrator()
