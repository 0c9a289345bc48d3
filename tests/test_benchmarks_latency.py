"""Latency loop and statistics, environment record. The runner here is a stand-in with known
per-call times (the real runners are measured by ``make bench``; latency is never asserted on them)."""
import shutil
import time

import numpy as np
import pytest

from inception_deploy.benchmarks.environment import environment, library_versions, one_line
from inception_deploy.benchmarks.latency import Stats, TimingPolicy, WarmupPolicy, measure


class SleepRunner:
    """Calls take ``ms`` milliseconds; reports a GPU time like a CUDA backend when ``gpu_ms`` is set."""

    def __init__(self, ms: float, gpu_ms=None):
        self.ms = ms
        self.gpu_ms = gpu_ms
        self.calls = 0
        self.last_gpu_ms = None
        self.shapes = []

    def infer(self, batch):
        self.calls += 1
        self.shapes.append(batch.shape)
        time.sleep(self.ms / 1000.0)
        self.last_gpu_ms = self.gpu_ms
        return np.zeros((batch.shape[0], 10), np.float32)


def test_stats_match_numpy_percentiles():
    samples = [float(x) for x in np.random.default_rng(0).gamma(2.0, 3.0, size=997)]
    s = Stats.of(samples)
    a = np.asarray(samples)
    assert s.count == 997
    assert s.min == a.min() and s.max == a.max()
    for name, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p99", 99)):
        assert getattr(s, name) == pytest.approx(np.percentile(a, q))
    assert s.mean == pytest.approx(a.mean())
    assert s.min <= s.p50 <= s.p90 <= s.p95 <= s.p99 <= s.max
    with pytest.raises(ValueError):
        Stats.of([])


def test_measure_warms_up_by_iterations_and_time_then_times_n_iterations():
    r = SleepRunner(2.0)
    batch = np.zeros((4, 3, 8, 8), np.float32)
    res = measure(r, batch, WarmupPolicy(iterations=3, seconds=0.05), TimingPolicy(iterations=12))
    # warm-up: at least 3 calls AND at least 50 ms (2 ms calls -> about 25 calls)
    assert res.warmup_iterations >= 3 and res.warmup_s >= 0.05
    assert res.warmup_iterations > 10
    assert res.iterations == 12 and len(res.samples_ms) == 12
    assert r.calls == res.warmup_iterations + 12
    assert res.batch == 4
    assert 1.9 <= res.e2e_ms.min and res.e2e_ms.p50 < 50
    assert res.throughput_ips == pytest.approx(1000.0 * 4 / res.e2e_ms.mean)
    assert res.gpu_ms is None and not res.cut_by_time_limit


def test_measure_stops_at_the_time_limit_and_records_gpu_time():
    r = SleepRunner(20.0, gpu_ms=1.5)
    res = measure(r, np.zeros((1, 3, 4, 4), np.float32), WarmupPolicy(iterations=1, seconds=0.0),
                  TimingPolicy(iterations=1000, max_seconds=0.2, min_iterations=3))
    assert res.cut_by_time_limit
    assert 3 <= res.iterations < 30
    assert res.gpu_ms is not None and res.gpu_ms.p50 == pytest.approx(1.5)
    assert res.gpu_ms.count == res.iterations


def test_measure_with_prepare_times_the_preparation_too():
    r = SleepRunner(1.0)
    calls = []

    def prepare():
        calls.append(1)
        time.sleep(0.004)
        return np.zeros((2, 3, 4, 4), np.float32)

    res = measure(r, np.zeros((2, 3, 4, 4), np.float32), WarmupPolicy(iterations=2, seconds=0.0),
                  TimingPolicy(iterations=5), prepare=prepare)
    assert res.with_preprocessing and len(calls) == 2 + 5
    assert res.e2e_ms.min >= 4.5
    d = res.to_dict()
    assert d["e2e_ms"]["p50"] == res.e2e_ms.p50 and len(d["samples_ms"]) == 5


def test_environment_record_names_cpu_threads_and_libraries():
    env = environment({"requested": 2})
    assert env["cpu"] and env["cpus_usable"] >= 1 and env["cpus_logical"] >= env["cpus_usable"]
    libs = library_versions()
    assert libs["numpy"] == np.__version__ and "onnxruntime" in libs and "python" in libs
    if shutil.which("nvidia-smi") is None:
        assert env["gpus"] == []       # no GPU: an empty list, not an error
    else:
        assert all("name" in g for g in env["gpus"])
    assert env["threads"] == {"requested": 2}
    line = one_line(env)
    assert env["cpu"] in line and "onnxruntime" in line


def test_device_side_benchmark_modules_import_neither_torch_nor_timm():
    """verify runs on Jetson / GPU hosts with the system Python and no torch: keep it that way."""
    import subprocess
    import sys

    code = ("import sys\nfrom inception_deploy.benchmarks import bench, gate, report, plots, cli\n"
            "from inception_deploy.pipeline import metrics\n"
            "from inception_deploy.benchmarks.runners import factory\n"
            "bad = [m for m in ('torch', 'timm', 'modelopt') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
