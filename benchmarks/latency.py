"""Latency: warm up, time N iterations of one batch, summarise as percentiles and throughput.

The same loop measures every runner (PyTorch, ONNX Runtime, TensorRT): a runner is anything with
``infer(batch) -> logits`` and, on GPU backends, ``last_gpu_ms`` (CUDA-event time of the last
call's device work). End-to-end time is wall time around ``infer`` (host<->device copies
included); with ``prepare`` given, the timed region also covers turning files into the batch
(decode + preprocessing), which is what a camera app pays per frame.

numpy only, Python 3.8 syntax: ``verify`` runs this on device hosts too.
"""
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass
class Stats:
    """Summary of a list of per-iteration times, milliseconds."""

    count: int
    min: float
    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    max: float
    std: float

    @classmethod
    def of(cls, samples_ms: List[float]) -> "Stats":
        if not samples_ms:
            raise ValueError("no latency samples to summarise")
        a = np.asarray(samples_ms, dtype=np.float64)
        p = np.percentile(a, PERCENTILES)
        return cls(count=int(a.size), min=float(a.min()), p50=float(p[0]), p90=float(p[1]), p95=float(p[2]),
                   p99=float(p[3]), mean=float(a.mean()), max=float(a.max()), std=float(a.std()))

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class WarmupPolicy:
    """Warm up until at least ``iterations`` calls AND ``seconds`` have passed (lazy kernel
    compilation, allocator growth, CPU frequency), but never longer than ``max_seconds``."""

    iterations: int = 5
    seconds: float = 1.0
    max_seconds: float = 30.0


@dataclass
class TimingPolicy:
    """``iterations`` timed calls, cut short after ``max_seconds`` once ``min_iterations`` ran."""

    iterations: int = 50
    max_seconds: float = 20.0
    min_iterations: int = 5


@dataclass
class LatencyResult:
    """One runner at one batch size."""

    batch: int
    iterations: int
    warmup_iterations: int
    warmup_s: float
    e2e_ms: Stats                                  # wall time around infer (+ prepare)
    throughput_ips: float                          # images / s from the mean end-to-end time
    gpu_ms: Optional[Stats] = None                 # CUDA-event time of the device work only
    with_preprocessing: bool = False
    cut_by_time_limit: bool = False
    samples_ms: List[float] = field(default_factory=list)   # raw e2e samples (plots)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["e2e_ms"] = self.e2e_ms.to_dict()
        d["gpu_ms"] = self.gpu_ms.to_dict() if self.gpu_ms else None
        d["samples_ms"] = [round(s, 4) for s in self.samples_ms]
        return d


def measure(runner: Any, batch: np.ndarray, warmup: Optional[WarmupPolicy] = None,
            timing: Optional[TimingPolicy] = None,
            prepare: Optional[Callable[[], np.ndarray]] = None,
            on_iteration: Optional[Callable[[], None]] = None) -> LatencyResult:
    """Time ``runner.infer`` on ``batch`` (or on ``prepare()`` each iteration, when given).

    ``on_iteration`` is called after every timed call (progress bars).
    """
    warmup = warmup or WarmupPolicy()
    timing = timing or TimingPolicy()
    n = int(batch.shape[0])

    def call() -> None:
        runner.infer(prepare() if prepare is not None else batch)

    t0 = time.perf_counter()
    done = 0
    while True:
        elapsed = time.perf_counter() - t0
        if (done >= warmup.iterations and elapsed >= warmup.seconds) or (done and elapsed >= warmup.max_seconds):
            break
        call()
        done += 1
    warmup_s = time.perf_counter() - t0

    e2e: List[float] = []
    gpu: List[float] = []
    cut = False
    start = time.perf_counter()
    for i in range(max(timing.iterations, 1)):
        t = time.perf_counter()
        call()
        e2e.append((time.perf_counter() - t) * 1000.0)
        g = getattr(runner, "last_gpu_ms", None)
        if g is not None:
            gpu.append(float(g))
        if on_iteration is not None:
            on_iteration()
        if i + 1 >= timing.min_iterations and time.perf_counter() - start >= timing.max_seconds \
                and i + 1 < timing.iterations:
            cut = True
            break
    stats = Stats.of(e2e)
    return LatencyResult(batch=n, iterations=len(e2e), warmup_iterations=done, warmup_s=warmup_s, e2e_ms=stats,
                         throughput_ips=1000.0 * n / stats.mean if stats.mean > 0 else 0.0,
                         gpu_ms=Stats.of(gpu) if len(gpu) == len(e2e) else None,
                         with_preprocessing=prepare is not None, cut_by_time_limit=cut, samples_ms=e2e)
