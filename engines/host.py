"""What this machine is, as far as building an engine goes: Jetson or not, its GPU, CUDA version.

Every probe is best-effort and returns ``None`` when the answer is not readable (no GPU, no
driver, no ``nvidia-smi``): the builder then records "unknown" rather than guessing.
Device-side: stdlib only (``cuda-python`` used when installed).
"""
import importlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple

# Jetson modules by device-tree model -> compute capability of their iGPU.
JETSON_CC = (("orin", "8.7"), ("xavier", "7.2"), ("thor", "11.0"), ("tx2", "6.2"), ("nano", "5.3"))


@dataclass
class GpuInfo:
    name: str
    compute_capability: str      # "8.7"
    source: str                  # how it was found

    @property
    def cc_tuple(self) -> Tuple[int, int]:
        major, _, minor = self.compute_capability.partition(".")
        return int(major), int(minor or 0)


@dataclass
class HostInfo:
    jetson: bool
    jetson_model: Optional[str] = None
    l4t_release: Optional[str] = None
    power_mode: Optional[str] = None
    gpu: Optional[GpuInfo] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _read(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace").replace("\x00", " ").strip()
    except OSError:
        return None


def is_jetson(root: str = "/") -> bool:
    """A Jetson (L4T) from ``/etc/nv_tegra_release`` or the device tree (``nvidia,tegra``)."""
    if os.path.isfile(os.path.join(root, "etc", "nv_tegra_release")):
        return True
    compatible = _read(os.path.join(root, "proc", "device-tree", "compatible")) or ""
    model = _read(os.path.join(root, "proc", "device-tree", "model")) or ""
    return "nvidia,tegra" in compatible or "jetson" in model.lower()


def nvpmodel_mode(timeout_s: float = 5.0) -> Optional[str]:
    """The Jetson power mode (``nvpmodel -q``: ``NV Power Mode: MAXN`` then its id), if readable."""
    exe = shutil.which("nvpmodel")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-q"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout_s,
                             check=False).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"NV Power Mode:\s*(\S+)", out)
    if not m:
        return None
    ids = [line.strip() for line in out.splitlines() if line.strip().isdigit()]
    return m.group(1) + (" (mode %s)" % ids[0] if ids else "")


def _gpu_from_cuda_python() -> Optional[GpuInfo]:
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            rt = importlib.import_module(name)
        except ImportError:
            continue
        try:
            err, props = rt.cudaGetDeviceProperties(0)
            if int(err) != 0:
                return None
            gpu_name = props.name.decode("utf-8", "replace") if isinstance(props.name, bytes) else str(props.name)
            return GpuInfo(gpu_name.strip("\x00 "), "%d.%d" % (props.major, props.minor), "cuda-python")
        except Exception:  # no driver, no device: the probe just has no answer
            return None
    return None


def _gpu_from_nvidia_smi(timeout_s: float = 10.0) -> Optional[GpuInfo]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=timeout_s, check=False).stdout.decode("utf-8", "replace")
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.strip().splitlines()[0] if out.strip() else ""
    name, _, cc = first.rpartition(",")
    if not re.match(r"^\s*\d+\.\d+\s*$", cc):
        return None
    return GpuInfo(name.strip(), cc.strip(), "nvidia-smi")


def _gpu_from_jetson_model(model: Optional[str]) -> Optional[GpuInfo]:
    lower = (model or "").lower()
    for key, cc in JETSON_CC:
        if key in lower:
            return GpuInfo(model or "Jetson", cc, "device-tree model")
    return None


def detect(root: str = "/") -> HostInfo:
    jetson = is_jetson(root)
    info = HostInfo(jetson=jetson)
    if jetson:
        info.jetson_model = _read(os.path.join(root, "proc", "device-tree", "model"))
        release = _read(os.path.join(root, "etc", "nv_tegra_release"))
        info.l4t_release = release.splitlines()[0] if release else None
        info.power_mode = nvpmodel_mode()
    info.gpu = _gpu_from_cuda_python() or _gpu_from_nvidia_smi() or (
        _gpu_from_jetson_model(info.jetson_model) if jetson else None)
    return info


def cuda_version(api: Any = None) -> Optional[str]:
    """The CUDA major version the TensorRT wheel was built for (``tensorrt_rtx_cu13`` -> ``13``),
    else the toolkit's ``version.json``, else the CUDA runtime's own answer; ``None`` if unknown."""
    if api is not None:
        try:
            from importlib import metadata
            for dist in metadata.distributions():
                m = re.match(r"^%s[-_]cu(\d+)$" % re.escape(api.flavour), (dist.metadata.get("Name") or "").lower())
                if m and dist.version == api.version:
                    return m.group(1)
        except Exception:  # metadata is optional: a system (Debian/JetPack) TensorRT has none
            pass
    for path in ("/usr/local/cuda/version.json",):
        text = _read(path)
        if text:
            try:
                return str(json.loads(text)["cuda"]["version"])
            except (ValueError, KeyError, TypeError):
                pass
    try:
        rt = importlib.import_module("cuda.bindings.runtime")
        err, version = rt.cudaRuntimeGetVersion()
        if int(err) == 0:
            return "%d.%d" % (version // 1000, (version % 1000) // 10)
    except Exception:  # not installed or no driver
        pass
    return None
