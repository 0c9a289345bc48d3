"""The trtexec line that builds the same engine as :func:`engines.builder.build_engine` on a target.

Generated from the same decisions, never written beside them: the network mode comes from
:func:`engines.builder.resolve_network_mode` (given the target's :class:`TargetCapabilities`), the
batch profile from :meth:`Target.batch_for`, workspace, optimisation level, hardware compatibility
and the timing cache file from the target and the builder's naming. Each option is checked against
trtexec's own parser (``samples/common/sampleOptions.cpp``) at the target's TensorRT tag:

- ``--buildOnly`` (8.5) became ``--skipInference`` in 8.6 (``--buildOnly`` deprecated, then removed in 10.x);
- ``--builderOptimizationLevel`` and ``--hardwareCompatibilityLevel`` exist from 8.6;
- ``--stronglyTyped`` from 10.x; ``--memPoolSize=workspace:N`` takes MiB without a unit in 8.5 and 10.x;
- ``--timingCacheFile``, ``--profilingVerbosity=detailed``, ``--calib``, ``--useDLACore`` and
  ``--allowGPUFallback`` in all of them.

Every word is quoted for the shell (:func:`shlex.quote`); the timing cache path names the TensorRT
version, which only the device knows, so it is a shell variable the script sets. Stdlib only.
"""
import shlex
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from inception_deploy.engines.builder import NetworkMode, resolve_network_mode
from inception_deploy.engines.targets import Target
from inception_deploy.engines.trt_api import TargetCapabilities

TRTEXEC_VAR = "TRTEXEC"
TIMING_CACHE_VAR = "TIMING_CACHE"


@dataclass(frozen=True)
class ShellVar:
    """An argument whose value the script computes at run time: ``<prefix>"$NAME"``."""

    prefix: str
    name: str

    def render(self) -> str:
        return '%s"$%s"' % (shlex.quote(self.prefix) if self.prefix else "", self.name)


Arg = Union[str, ShellVar]


def capabilities(target: Target) -> TargetCapabilities:
    return TargetCapabilities.of(target.flavour, target.tensorrt_major, target.tensorrt_minor, target.has_dla)


def at_least(target: Target, major: int, minor: int = 0) -> bool:
    return (target.tensorrt_major, target.tensorrt_minor) >= (major, minor)


def build_only_flag(target: Target) -> str:
    """Exit after building (no timing run): ``--buildOnly`` in trtexec 8.5, ``--skipInference`` from 8.6."""
    return "--skipInference" if at_least(target, 8, 6) else "--buildOnly"


def _shape(name: str, batch: int, chw: Sequence[int]) -> str:
    return "%s:%s" % (name, "x".join(str(d) for d in [batch] + list(chw)))


def _mode_args(mode: NetworkMode, calib_rel: Optional[str], gpu_fallback: bool) -> List[str]:
    args = ["--stronglyTyped"] if mode.strongly_typed else []
    for flag in mode.flags:
        args += {"FP16": ["--fp16"], "INT8": ["--int8"]}.get(flag, [])
    if mode.implicit_int8:
        args.append("--calib=%s" % calib_rel)
    if mode.dla_core >= 0:
        args.append("--useDLACore=%d" % mode.dla_core)
        if gpu_fallback:
            args.append("--allowGPUFallback")
    return args


def trtexec_args(target: Target, precision: str, onnx_rel: str, engine_rel: str, input_name: str,
                 chw: Sequence[int], calib_rel: Optional[str] = None, dla_core: int = -1) -> List[Arg]:
    """trtexec's argv (after the executable) for what the builder does with the same inputs."""
    mode = resolve_network_mode(capabilities(target), target, precision, dla_core)
    b = target.batch_for(dla_core)
    args: List[Arg] = ["--onnx=%s" % onnx_rel, "--saveEngine=%s" % engine_rel,
                       "--minShapes=%s" % _shape(input_name, b.min, chw),
                       "--optShapes=%s" % _shape(input_name, b.opt, chw),
                       "--maxShapes=%s" % _shape(input_name, b.max, chw),
                       "--memPoolSize=workspace:%d" % target.workspace_mib, "--profilingVerbosity=detailed"]
    if at_least(target, 8, 6):
        args.append("--builderOptimizationLevel=%d" % target.optimization_level)
        if target.hardware_compatibility == "ampere_plus":
            args.append("--hardwareCompatibilityLevel=ampere+")
    args += _mode_args(mode, calib_rel, target.dla.gpu_fallback)
    args += [ShellVar("--timingCacheFile=", TIMING_CACHE_VAR), build_only_flag(target)]
    return args


def render(args: Sequence[Arg]) -> str:
    """``"$TRTEXEC" arg ...``: every literal word shell-quoted."""
    words = ['"$%s"' % TRTEXEC_VAR]
    words += [a.render() if isinstance(a, ShellVar) else shlex.quote(a) for a in args]
    return " ".join(words)
