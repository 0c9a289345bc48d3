"""Import whichever TensorRT this machine has and say what it can do, by attribute.

One builder serves TensorRT 8.5/8.6 (JetPack 5, 6.0), 10.x (JetPack 6.1+, datacenter), 11.x and
TensorRT-RTX. Their Python APIs differ in what exists, not in how it is spelled, so every
capability here is a ``hasattr`` on the imported module (never a version-string comparison),
together with the flavour where a name exists without the feature behind it: TensorRT-RTX keeps
``DeviceType.DLA`` and the timing-cache calls, but has no DLA and its timing cache is a no-op.

The detection is unit-tested against the real attribute sets of each generation
(``tests/data/trt_api/``: the live ``tensorrt_rtx`` module, the published ``tensorrt-stubs``
10.13 package, and NVIDIA's pybind11 sources for 8.5, 8.6 and 11.1). Device-side: stdlib only.
"""
import importlib
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from inception_deploy.pipeline.errors import Unsupported

FLAVOURS = ("tensorrt", "tensorrt_rtx")
_NOT_SETTABLE = ("CURRENT", "NONE", "name", "value", "Members")


@dataclass
class TrtApi:
    """An imported TensorRT module plus what its API offers."""

    module: Any
    flavour: str   # "tensorrt" | "tensorrt_rtx"
    version: str

    # -- helpers ------------------------------------------------------------------------------
    def _has(self, owner: str, *names: str) -> bool:
        obj = getattr(self.module, owner, None)
        return obj is not None and all(hasattr(obj, n) for n in names)

    @property
    def is_rtx(self) -> bool:
        return self.flavour == "tensorrt_rtx"

    @property
    def label(self) -> str:
        """``TensorRT 10.3.0`` / ``TensorRT-RTX 1.7.1.116``, for messages and manifests."""
        return ("TensorRT-RTX " if self.is_rtx else "TensorRT ") + self.version

    # -- network definition -------------------------------------------------------------------
    @property
    def strongly_typed(self) -> bool:
        """Types come from the ONNX (Q/DQ, FP16 casts); TensorRT 10+, 11, TensorRT-RTX."""
        return self._has("NetworkDefinitionCreationFlag", "STRONGLY_TYPED")

    @property
    def explicit_batch_flag_needed(self) -> bool:
        """TensorRT 8.x still has implicit-batch networks (``Builder.max_batch_size``) and needs
        ``EXPLICIT_BATCH`` for ONNX; 10.x keeps the flag as a deprecated no-op, 11.x drops it."""
        return self._has("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH") and self._has("Builder", "max_batch_size")

    # -- precision flags (weakly typed networks) ----------------------------------------------
    @property
    def fp16_flag(self) -> bool:
        return self._has("BuilderFlag", "FP16")

    @property
    def int8_flag(self) -> bool:
        return self._has("BuilderFlag", "INT8")

    @property
    def int8_calibrator(self) -> bool:
        """Implicit INT8 from a calibration cache (``IInt8EntropyCalibrator2``): TensorRT <= 10."""
        return (self.int8_flag and hasattr(self.module, "IInt8EntropyCalibrator2")
                and self._has("IBuilderConfig", "int8_calibrator"))

    # -- devices ------------------------------------------------------------------------------
    @property
    def dla(self) -> bool:
        """DLA cores (Jetson Xavier/Orin). TensorRT-RTX exposes the names but has no DLA."""
        return (not self.is_rtx and self._has("DeviceType", "DLA")
                and self._has("IBuilderConfig", "DLA_core", "default_device_type")
                and self._has("BuilderFlag", "GPU_FALLBACK"))

    @property
    def aot_compute_capabilities(self) -> List[str]:
        """Compute capabilities a build can target without that GPU (TensorRT-RTX), as ``"8.6"``."""
        if not (self._has("IBuilderConfig", "set_compute_capability", "num_compute_capabilities")
                and hasattr(self.module, "ComputeCapability")):
            return []
        names = [n for n in dir(self.module.ComputeCapability) if n.startswith("SM") and n not in _NOT_SETTABLE]
        return sorted((sm_to_cc(n) for n in names), key=cc_key)

    # -- builder configuration ----------------------------------------------------------------
    @property
    def memory_pool_limits(self) -> bool:
        return self._has("IBuilderConfig", "set_memory_pool_limit") and self._has("MemoryPoolType", "WORKSPACE")

    @property
    def timing_cache(self) -> bool:
        """Loadable/savable timing cache. A no-op (deprecated) in TensorRT-RTX: not used there."""
        return not self.is_rtx and self._has("IBuilderConfig", "create_timing_cache", "set_timing_cache",
                                             "get_timing_cache")

    @property
    def progress_monitor(self) -> bool:
        return hasattr(self.module, "IProgressMonitor") and self._has("IBuilderConfig", "progress_monitor")

    @property
    def detailed_profiling(self) -> bool:
        return self._has("ProfilingVerbosity", "DETAILED") and self._has("IBuilderConfig", "profiling_verbosity")

    @property
    def optimization_level(self) -> bool:
        return self._has("IBuilderConfig", "builder_optimization_level")

    @property
    def hardware_compatibility(self) -> bool:
        return hasattr(self.module, "HardwareCompatibilityLevel") and self._has(
            "IBuilderConfig", "hardware_compatibility_level")

    @property
    def serialized_build(self) -> bool:
        """``Builder.build_serialized_network`` (TensorRT 8.0+): the only build call the builder uses."""
        return self._has("Builder", "build_serialized_network")

    @property
    def parse_from_file(self) -> bool:
        return self._has("OnnxParser", "parse_from_file")

    def features(self) -> dict:
        """Every detected capability, for manifests and ``inception-deploy targets``."""
        names = ("strongly_typed", "explicit_batch_flag_needed", "fp16_flag", "int8_flag", "int8_calibrator", "dla",
                 "memory_pool_limits", "timing_cache", "progress_monitor",
                 "detailed_profiling", "optimization_level", "hardware_compatibility", "serialized_build",
                 "parse_from_file")
        out = {n: bool(getattr(self, n)) for n in names}
        out["aot_compute_capabilities"] = self.aot_compute_capabilities
        return out


@dataclass(frozen=True)
class TargetCapabilities:
    """What a target's own TensorRT offers for choosing a network mode, from its generation alone.

    Used where the builder's choice must be written down away from the device (the trtexec lines of
    a deploy bundle). The same answers as :class:`TrtApi` detects from each generation's real
    attribute set (tests/test_engines_trt_api.py checks them against the 8.5, 10.13 and 11.1
    snapshots), so :func:`engines.builder.resolve_network_mode` takes either.
    """

    label: str
    strongly_typed: bool
    fp16_flag: bool
    int8_flag: bool
    int8_calibrator: bool
    dla: bool

    @classmethod
    def of(cls, flavour: str, major: int, minor: int = 0, has_dla: bool = False) -> "TargetCapabilities":
        if flavour == "tensorrt_rtx":
            return cls("TensorRT-RTX", True, False, False, False, False)
        label = "TensorRT %d.%d" % (major, minor) if minor else "TensorRT %d.x" % major
        flags = major < 11                      # BuilderFlag.FP16/INT8 are gone in 11.x (strongly typed only)
        return cls(label, strongly_typed=major >= 10, fp16_flag=flags, int8_flag=flags,
                   int8_calibrator=major <= 10, dla=has_dla and major <= 10)


def sm_to_cc(name: str) -> str:
    """``SM86`` -> ``8.6``, ``SM120`` -> ``12.0``."""
    digits = name[2:]
    return "%s.%s" % (digits[:-1], digits[-1])


def cc_to_sm(cc: str) -> str:
    """``8.6`` -> ``SM86``."""
    major, _, minor = cc.partition(".")
    return "SM%s%s" % (major, minor or "0")


def cc_key(cc: str) -> Tuple[int, int]:
    major, _, minor = cc.partition(".")
    return int(major), int(minor or 0)


def _version_of(module: Any) -> str:
    return str(getattr(module, "__version__", "") or "unknown")


def import_tensorrt(prefer: Optional[str] = None, only: bool = False) -> TrtApi:
    """Import ``tensorrt`` or ``tensorrt_rtx`` (``prefer`` first, then the other; with ``only``, just
    ``prefer``: a plan loads only in the flavour that wrote it, whatever else is installed).

    Raises :class:`Unsupported` naming the packages tried when none imports.
    """
    if prefer is not None and prefer not in FLAVOURS:
        raise ValueError("prefer must be one of %s, got %r" % (", ".join(FLAVOURS), prefer))
    order = [prefer] if prefer else []
    if not (only and prefer):
        order += [f for f in FLAVOURS if f not in order]
    reasons = []
    for flavour in order:
        try:
            module = importlib.import_module(flavour)
        except ImportError as e:  # includes a bindings package whose libraries are missing
            reasons.append("%s: %s" % (flavour, str(e).splitlines()[0] if str(e) else type(e).__name__))
            continue
        return TrtApi(module=module, flavour=flavour, version=_version_of(module))
    raise Unsupported("no TensorRT Python bindings here (%s); install TensorRT (JetPack: python3-libnvinfer; "
                      "x86: pip install tensorrt) or TensorRT-RTX (pip install tensorrt-rtx)" % "; ".join(reasons))


def installed() -> List[TrtApi]:
    """Every TensorRT flavour importable here (for listings; building uses :func:`import_tensorrt`)."""
    found = []
    for flavour in FLAVOURS:
        try:
            module = importlib.import_module(flavour)
        except ImportError:
            continue
        found.append(TrtApi(module=module, flavour=flavour, version=_version_of(module)))
    return found


def from_module(module: Any) -> TrtApi:
    """Wrap an already-imported module (or an attribute-only stand-in, in tests)."""
    name = getattr(module, "__name__", "tensorrt")
    flavour = "tensorrt_rtx" if name.split(".")[0] == "tensorrt_rtx" else "tensorrt"
    return TrtApi(module=module, flavour=flavour, version=_version_of(module))
