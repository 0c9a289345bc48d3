"""Where a benchmark ran: CPU, threads, GPU and clocks, Jetson power mode, library versions.

A latency figure without this record cannot be compared with another one. Everything here is
best effort and cheap: versions come from package metadata (nothing heavy is imported), GPU
facts from ``nvidia-smi`` when it exists, Jetson facts from files and ``nvpmodel -q`` when
readable. stdlib only, Python 3.8 syntax (runs on device hosts).
"""
import os
import platform
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Optional

# distribution name -> key in the record
LIBRARIES = (
    ("inception-deploy", "inception_deploy"), ("numpy", "numpy"), ("onnxruntime", "onnxruntime"),
    ("onnxruntime-gpu", "onnxruntime_gpu"), ("onnx", "onnx"), ("torch", "torch"), ("timm", "timm"),
    ("nvidia-modelopt", "modelopt"), ("tensorrt", "tensorrt"), ("tensorrt-rtx", "tensorrt_rtx"),
    ("pycuda", "pycuda"), ("cuda-python", "cuda_python"), ("opencv-python-headless", "opencv"),
    ("opencv-python", "opencv_full"), ("pillow", "pillow"), ("matplotlib", "matplotlib"),
)
GPU_QUERY = "name,driver_version,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.limit,memory.total"


def _version(dist: str) -> Optional[str]:
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7
        return None
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> Dict[str, str]:
    found = {"python": platform.python_version()}
    for dist, key in LIBRARIES:
        v = _version(dist)
        if v:
            found[key] = v
    return found


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _run(cmd: List[str], timeout: float = 5.0) -> Optional[str]:
    if not shutil.which(cmd[0]):
        return None
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "replace").strip() if out.returncode == 0 else None


def gpus() -> List[Dict[str, str]]:
    """One record per GPU from ``nvidia-smi`` (clocks in MHz, power in W), empty without one."""
    text = _run(["nvidia-smi", "--query-gpu=" + GPU_QUERY, "--format=csv,noheader,nounits"])
    if not text:
        return []
    keys = GPU_QUERY.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")))) for line in text.splitlines() if line.strip()]


def devfreq_clocks(root: str = "/") -> Dict[str, Dict[str, int]]:
    """Current/min/max clock (Hz) of every devfreq device (on a Jetson: the GPU, e.g. ``17000000.ga10b``
    on Orin, and the DLA/NVENC engines where exposed), from ``/sys/class/devfreq``; empty where absent."""
    base = os.path.join(root, "sys", "class", "devfreq")
    clocks: Dict[str, Dict[str, int]] = {}
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return clocks
    for name in names:
        record = {}
        for key in ("cur_freq", "min_freq", "max_freq"):
            try:
                with open(os.path.join(base, name, key), encoding="utf-8") as f:
                    record[key + "_hz"] = int(f.read().strip())
            except (OSError, ValueError):
                continue
        if record:
            clocks[name] = record
    return clocks


def jetson() -> Optional[Dict[str, Any]]:
    """L4T release and power mode on a Jetson (None elsewhere)."""
    release = None
    try:
        with open("/etc/nv_tegra_release", encoding="utf-8", errors="replace") as f:
            release = f.readline().strip()
    except OSError:
        pass
    model = None
    try:
        with open("/proc/device-tree/model", "rb") as f:
            model = f.read().decode("utf-8", "replace").strip("\x00\n ")
    except OSError:
        pass
    if not release and not (model and "jetson" in model.lower()):
        return None
    record: Dict[str, Any] = {"l4t": release, "model": model}
    mode = _run(["nvpmodel", "-q"])
    if mode:
        record["nvpmodel"] = " ".join(line.strip() for line in mode.splitlines() if line.strip())
    else:
        record["nvpmodel"] = "unreadable (nvpmodel -q needs the nvpmodel tool; run as a user that may query it)"
    record["clocks"] = devfreq_clocks() or "unreadable (no /sys/class/devfreq entries)"
    return record


def environment(threads: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """The whole record; ``threads`` lets runners add the thread counts they were given."""
    record: Dict[str, Any] = {
        "host": platform.node(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpus_logical": os.cpu_count(),
        "cpus_usable": usable_cpus(),
        "python": sys.version.split()[0],
        "libraries": library_versions(),
        "gpus": gpus(),
    }
    try:
        record["load_average"] = [round(x, 2) for x in os.getloadavg()]  # busy host -> noisy latency
    except (AttributeError, OSError):
        pass
    j = jetson()
    if j:
        record["jetson"] = j
    if threads:
        record["threads"] = dict(threads)
    return record


def one_line(env: Dict[str, Any]) -> str:
    """Short form for report headers: CPU, cores, GPU, power mode."""
    parts = ["%s (%s of %s CPUs)" % (env.get("cpu", "?"), env.get("cpus_usable", "?"), env.get("cpus_logical", "?"))]
    for g in env.get("gpus") or []:
        parts.append("%s (SM %s MHz, driver %s)" % (g.get("name"), g.get("clocks.sm"), g.get("driver_version")))
    if env.get("jetson"):
        parts.append("Jetson %s" % (env["jetson"].get("nvpmodel") or ""))
    libs = env.get("libraries", {})
    shown = ["%s %s" % (k, libs[k]) for k in ("torch", "onnxruntime", "tensorrt", "tensorrt_rtx") if k in libs]
    return "; ".join(parts + shown)
