"""One engine builder for TensorRT 8.5/8.6, 10.x, 11.x and TensorRT-RTX.

ONNX -> parser -> network -> builder config -> serialized plan, with every generation-specific
choice made from :class:`~engines.trt_api.TrtApi` feature detection:

- network typing: strongly typed where the API has it (the Q/DQ and FP16 ONNX carry their own
  types), else the FP16/INT8 builder flags the explicit graph needs (TensorRT 8.x); the implicit
  INT8 path (FP32 ONNX + ``IInt8EntropyCalibrator2`` over the calibration cache) where the target
  asks for it and the API still has it (TensorRT <= 10); DLA builds are weakly typed with flags;
- dynamic batch through one optimisation profile, workspace through memory-pool limits,
  DETAILED profiling verbosity so the ``Layers:`` log lists each layer's precision, a timing
  cache per (target, TensorRT version), the progress monitor where available;
- TensorRT-RTX: compute capabilities set explicitly (AOT), so it builds with no GPU.

A request the installed TensorRT cannot honour raises :class:`Unsupported` naming what is
missing and what would work; nothing is ever silently downgraded. Only the TensorRT-RTX path
has run on the development machines; the TensorRT 8/10/11 branches follow NVIDIA's samples and
Polygraphy's ``backend/trt`` loader and are unit-tested on their detection logic only.
Device-side: stdlib only.
"""
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from inception_deploy.engines import host as hostinfo
from inception_deploy.engines import onnx_info, trt_hooks
from inception_deploy.engines.inputs import BuildInputs, locate
from inception_deploy.engines.layers import LayerSummary, parse_layers_log
from inception_deploy.engines.targets import BatchProfile, Target, resolve_target
from inception_deploy.engines.trt_api import TargetCapabilities, TrtApi, cc_key, cc_to_sm, import_tensorrt
from inception_deploy.pipeline import atomic
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import publish
from inception_deploy.pipeline.hashing import file_sha256
from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.pipeline.frame_io import frame_input_size, frame_size_name

ENGINE_NAME = "model.engine"
SOFTMAX_OUTPUT = "probabilities"   # the output a --softmax engine has instead of the model's logits


@dataclass
class NetworkMode:
    strongly_typed: bool
    flags: List[str]                 # BuilderFlag names set on the config
    implicit_int8: bool = False      # calibrator over the calibration cache
    dla_core: int = -1
    softmax: bool = False            # a Softmax appended: the engine outputs probabilities


@dataclass
class BuildResult:
    engine_path: str
    manifest: mf.Manifest
    layers: LayerSummary
    log_text: str
    build_s: float
    log_path: str = ""
    timing_cache_path: Optional[str] = None
    skipped: bool = False            # an up-to-date engine was kept


def why_not_here(target: Target, api: Optional[TrtApi], machine: hostinfo.HostInfo) -> Optional[str]:
    """``None`` when this machine can build ``target``, else the reason in one paragraph."""
    if api is None:
        return ("there is no TensorRT here to build %s engines (they are built by %s)"
                % (target.name, "TensorRT-RTX" if target.flavour == "tensorrt_rtx" else target.tensorrt))
    if target.flavour == "tensorrt_rtx":
        if not api.is_rtx:
            return ("%s plans are TensorRT-RTX plans; this machine has %s, which cannot write them "
                    "(pip install tensorrt-rtx)" % (target.name, api.label))
        missing = [cc for cc in target.compute_capabilities if cc not in api.aot_compute_capabilities]
        if missing:
            return ("%s cannot build ahead of time for compute capability %s (it offers %s)"
                    % (api.label, ", ".join(missing), ", ".join(api.aot_compute_capabilities) or "none"))
        return None
    if api.is_rtx:
        return ("%s needs %s. This machine has only %s, whose plans are not TensorRT plans and which has no "
                "compute capability %s target; TensorRT itself cannot cross-build engines for another GPU"
                % (target.name, target.tensorrt, api.label, "/".join(target.compute_capabilities)))
    if target.is_jetson and not machine.jetson:
        return ("%s engines must be built on the Jetson itself (TensorRT builds only for the GPU it runs on, and "
                "no x86 TensorRT targets the Jetson iGPU)" % target.name)
    if machine.jetson and not target.is_jetson:
        return "this is a Jetson; %s engines must be built on a %s host" % (target.name, target.platform)
    if machine.gpu is None and not machine.jetson:
        return "TensorRT is installed but no CUDA GPU is visible here (checked cuda-python and nvidia-smi)"
    if machine.gpu is not None and machine.gpu.compute_capability not in target.compute_capabilities:
        return ("this GPU (%s, compute capability %s) is not a %s GPU (%s); TensorRT builds only for the GPU "
                "it runs on" % (machine.gpu.name, machine.gpu.compute_capability, target.name,
                                "/".join(target.compute_capabilities)))
    return None


# What every build needs from the TensorRT API (8.4+; the oldest supported is JetPack 5.1's 8.5.2).
REQUIRED_FEATURES = (("serialized_build", "Builder.build_serialized_network"),
                     ("memory_pool_limits", "IBuilderConfig.set_memory_pool_limit"))


def require_builder_api(api: TrtApi) -> None:
    """Unsupported (one line) for a TensorRT older than the builder's minimum (8.5)."""
    missing = [what for feature, what in REQUIRED_FEATURES if not getattr(api, feature)]
    if missing:
        raise Unsupported("%s is older than the builder supports: it lacks %s; use TensorRT 8.5 or newer (JetPack "
                          "5.1+)" % (api.label, ", ".join(missing)))


def resolve_network_mode(api: Union[TrtApi, TargetCapabilities], target: Target, precision: str,
                         dla_core: int = -1) -> NetworkMode:
    """How this TensorRT builds ``precision`` for ``target``; Unsupported if it cannot.

    ``api`` is the imported TensorRT (a build) or the target's :class:`TargetCapabilities` (the
    trtexec lines of a deploy bundle): one decision for both.
    """
    implicit = precision == "int8" and target.int8_mode_for(dla_core) == "implicit"

    def need(ok: bool, what: str, instead: str) -> None:
        if not ok:
            raise Unsupported("%s cannot build %s %s: it lacks %s; %s" % (api.label, target.name, precision, what,
                                                                        instead))

    if dla_core >= 0:
        need(api.dla, "DLA support (DeviceType.DLA, IBuilderConfig.DLA_core, BuilderFlag.GPU_FALLBACK)",
             "build for the GPU (--dla-core -1)")
        need(api.fp16_flag, "BuilderFlag.FP16, which DLA builds need", "build for the GPU (--dla-core -1)")
        flags = ["FP16"] if precision == "fp16" else ["INT8", "FP16"]
        if precision == "int8":
            need(api.int8_flag, "BuilderFlag.INT8", "build for the GPU (--dla-core -1)")
        if target.dla.gpu_fallback:
            flags.append("GPU_FALLBACK")
        return NetworkMode(strongly_typed=False, flags=flags, implicit_int8=implicit, dla_core=dla_core)
    if implicit:
        need(api.int8_calibrator, "implicit INT8 calibration (BuilderFlag.INT8 + IInt8EntropyCalibrator2; "
             "TensorRT <= 10 only)", "build INT8 from the Q/DQ ONNX on a target with int8_mode = \"qdq\" "
             "(e.g. jetson-orin on JetPack 6.1+, rtx), or FP16")
        return NetworkMode(strongly_typed=False, flags=["INT8"], implicit_int8=True)
    if api.strongly_typed:
        return NetworkMode(strongly_typed=True, flags=[])
    if precision == "fp16":
        need(api.fp16_flag, "both strongly typed networks and BuilderFlag.FP16", "build fp32")
        return NetworkMode(strongly_typed=False, flags=["FP16"])
    if precision == "int8":
        need(api.int8_flag, "both strongly typed networks and BuilderFlag.INT8", "build fp16 or fp32")
        return NetworkMode(strongly_typed=False, flags=["INT8"])
    return NetworkMode(strongly_typed=False, flags=[])


def engine_variant(precision: str, dla_core: int = -1, softmax: bool = False,
                   frame: Optional[Tuple[int, int]] = None) -> str:
    """The engine's folder name: the precision, ``-dla<N>`` for a DLA build, ``-softmax`` when the
    engine outputs probabilities (DeepStream's classifier parser), ``-frame-<W>x<H>`` for a model that
    takes camera frames (pipeline.frame_variant), so no variant overwrites another."""
    return (precision + ("-dla%d" % dla_core if dla_core >= 0 else "") + ("-softmax" if softmax else "")
            + ("-frame-" + frame_size_name(frame) if frame else ""))


def engine_dir(out_root: str, target: Target, model_name: str, precision: str, dla_core: int = -1,
               softmax: bool = False, frame: Optional[Tuple[int, int]] = None) -> str:
    """``<out_root>/<target>/<model>/<variant>``; the model name (read from a manifest) must be one
    plain folder name, and the result stays inside ``out_root``."""
    from inception_deploy.pipeline.paths import path_component

    path_component(model_name, "model name", "the ONNX manifest")
    folder = os.path.join(out_root, target.name, model_name, engine_variant(precision, dla_core, softmax, frame))
    root = os.path.realpath(out_root)
    if not os.path.realpath(folder).startswith(root + os.sep):
        raise UserError("engine folder %s would be outside %s; check the model name in the manifest" % (folder, out_root))
    return folder


def timing_cache_path(out_root: str, target: Target, api: TrtApi) -> str:
    return os.path.join(out_root, target.name, "timing-%s-%s.cache" % (api.flavour, api.version))


def build_key(inputs: BuildInputs, target: Target, api: TrtApi, mode: NetworkMode, batch: BatchProfile,
              workspace_mib: int, ccs: Sequence[str]) -> Dict[str, Any]:
    """Everything that decides the plan's bytes; an engine whose key matches is up to date."""
    calib = inputs.calibration
    return {"onnx_sha256": inputs.manifest.artifact.get("sha256"),
            "calibration_cache_sha256": calib.sha256 if (calib and mode.implicit_int8) else None,
            "tensorrt": "%s %s" % (api.flavour, api.version), "target": target.name,
            "target_file_sha256": file_sha256(target.path) if target.path else None,
            "precision": inputs.precision, "batch": batch.label(), "workspace_mib": workspace_mib,
            "compute_capabilities": list(ccs), "dla_core": mode.dla_core, "softmax": mode.softmax}


def _set_profile(trt: Any, builder: Any, network: Any, config: Any, batch: BatchProfile) -> Dict[str, Any]:
    profile = builder.create_optimization_profile()
    shapes = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = list(tensor.shape)
        if dims and dims[0] != -1 and (batch.min != dims[0] or batch.max != dims[0]):
            raise UserError("input %r has a fixed batch of %d, but the batch profile is %s; re-export with a dynamic "
                            "batch or pass --batch %d" % (tensor.name, dims[0], batch.label(), dims[0]))
        if any(d == -1 for d in dims[1:]):
            raise UserError("input %r has dynamic non-batch dimensions %s; export with a fixed image size"
                            % (tensor.name, dims))
        rest = dims[1:]
        lo, mid, hi = tuple([batch.min] + rest), tuple([batch.opt] + rest), tuple([batch.max] + rest)
        profile.set_shape(tensor.name, lo, mid, hi)
        shapes[tensor.name] = {"min": list(lo), "opt": list(mid), "max": list(hi)}
    config.add_optimization_profile(profile)
    return {"profile": profile, "shapes": shapes}


def _configure(api: TrtApi, builder: Any, network: Any, target: Target, mode: NetworkMode, batch: BatchProfile,
               workspace_mib: int, ccs: Sequence[str], calibrator: Any, monitor: Any) -> Tuple[Any, Dict[str, Any]]:
    trt = api.module
    config = builder.create_builder_config()
    if api.detailed_profiling:
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if api.optimization_level:
        config.builder_optimization_level = target.optimization_level
    if target.hardware_compatibility != "none":
        if not api.hardware_compatibility:
            raise Unsupported("%s has no hardware-compatibility levels (target %s asks for %s); use TensorRT 8.6+ or "
                              "set hardware_compatibility = \"none\"" % (api.label, target.name,
                                                                       target.hardware_compatibility))
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel,
                                                      target.hardware_compatibility.upper())
    if api.is_rtx:
        config.num_compute_capabilities = len(ccs)
        for i, cc in enumerate(ccs):
            config.set_compute_capability(getattr(trt.ComputeCapability, cc_to_sm(cc)), i)
    for name in mode.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if mode.dla_core >= 0:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = mode.dla_core
    profile = _set_profile(trt, builder, network, config, batch)
    if calibrator is not None:
        config.int8_calibrator = calibrator
        if hasattr(config, "set_calibration_profile"):
            config.set_calibration_profile(profile["profile"])
    if monitor is not None:
        config.progress_monitor = monitor
    return config, profile["shapes"]


def _parse(api: TrtApi, network: Any, logger: Any, onnx_path: str) -> None:
    parser = api.module.OnnxParser(network, logger)
    if api.parse_from_file:
        ok = parser.parse_from_file(onnx_path)
    else:
        with open(onnx_path, "rb") as f:
            ok = parser.parse(f.read())
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise UserError("TensorRT's ONNX parser rejected %s: %s" % (onnx_path, " | ".join(errors[:3]) or "no detail"))


def _append_softmax(api: TrtApi, network: Any, mode: NetworkMode) -> str:
    """Make the network output softmax probabilities instead of logits (DeepStream's default
    classifier parser keeps a class only above 0 and its threshold, and reports the value as the
    confidence: it expects probabilities). The Softmax stays FP32: in a weakly typed (flag) build it
    is pinned to FP32, and in an implicit INT8 build it then needs no calibration scale."""
    trt = api.module
    if network.num_outputs != 1:
        raise UserError("--softmax needs a network with one output (the logits); this one has %d"
                        % network.num_outputs)
    logits = network.get_output(0)
    layer = network.add_softmax(logits)
    layer.axes = 1 << (len(logits.shape) - 1)          # over the classes (last axis of N x C)
    if not mode.strongly_typed:
        layer.precision = trt.DataType.FLOAT
        layer.set_output_type(0, trt.DataType.FLOAT)
    probabilities = layer.get_output(0)
    probabilities.name = SOFTMAX_OUTPUT
    network.unmark_output(logits)
    network.mark_output(probabilities)
    return logits.name


def _io_with_softmax(io: Dict[str, Any], logits_name: str) -> Dict[str, Any]:
    """The manifest's I/O record for an engine whose logits output was replaced by probabilities."""
    out = dict((io or {}).get("output") or {})
    out.update({"name": SOFTMAX_OUTPUT, "dtype": "float32", "activation": "softmax", "softmax_of": logits_name})
    return dict(io or {}, output=out)


def _check_dla_cores(builder: Any, mode: NetworkMode, target: Target) -> None:
    """Refuse a DLA core this device does not have (an Orin NX 8GB has one, AGX Orin two)."""
    have = getattr(builder, "num_DLA_cores", None)
    if mode.dla_core >= 0 and isinstance(have, int) and mode.dla_core >= have:
        raise Unsupported("this device has %d DLA core%s (TensorRT's Builder.num_DLA_cores), so DLA core %d does not "
                          "exist; use %s, or build for the GPU (--dla-core -1)%s"
                          % (have, "" if have == 1 else "s", mode.dla_core,
                             "--dla-core 0" if have else "no DLA core",
                             "; an Orin NX 8GB is target jetson-orin-nx-8gb" if target.is_jetson else ""))


def _load_timing_cache(api: TrtApi, config: Any, path: str) -> bool:
    data = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return bool(data)


def _summary_line(target: Target, precision: str, api: TrtApi, size: int, build_s: float, ccs: Sequence[str],
                  layers: LayerSummary, machine: hostinfo.HostInfo) -> str:
    where = ("for sm %s" % "/".join(ccs)) if api.is_rtx else (
        "on %s" % machine.gpu.name if machine.gpu else "on this GPU")
    return "%s %s: %.1f MB %s engine %s, built in %.1f s; %s" % (
        target.name, precision, size / 1e6, api.label, where, build_s, layers.line())


@dataclass
class BuildRequest:
    """What was asked for, resolved and checked once (target, precision, DLA core) with the options
    that override the target's defaults; :meth:`resolve` is the one place that does it."""

    target: Target
    precision: str
    dla_core: int = -1
    batch: Optional[BatchProfile] = None
    workspace_mib: Optional[int] = None
    compute_capabilities: Optional[Sequence[str]] = None
    calib_cache: Optional[str] = None
    softmax: bool = False
    frame_input: Optional[Tuple[int, int]] = None     # (H, W): the variant whose graph takes camera frames

    @classmethod
    def resolve(cls, target: Union[str, Target], precision: Optional[str] = None, dla_core: Optional[int] = None,
                **options: Any) -> "BuildRequest":
        """A target name or alias (or a Target), the precision (default: the target's) and DLA core
        (default: the target's), checked against the target; UserError naming what it builds."""
        t = resolve_target(target) if isinstance(target, str) else target
        chosen = precision or t.default_precision
        core = t.dla.core if dla_core is None else dla_core
        t.check_precision(chosen, core)
        return cls(target=t, precision=chosen, dla_core=core, **options)


@dataclass
class BuildOptions:
    """How to run a build, not what it builds (none of these change the plan's bytes)."""

    use_timing_cache: bool = True
    progress: bool = True
    force: bool = True
    echo: Optional[Callable[[str], None]] = None


@dataclass
class BuildPlan:
    """Everything decided before TensorRT builds: inputs (lineage-checked), network mode, batch
    profile, workspace, compute capabilities, where the engine goes and its up-to-date key."""

    request: BuildRequest
    inputs: BuildInputs
    api: TrtApi
    machine: hostinfo.HostInfo
    mode: NetworkMode
    batch: BatchProfile
    workspace_mib: int
    ccs: List[str]
    opset: int
    out_root: str
    engine_path: str
    key: Dict[str, Any]

    @property
    def target(self) -> Target:
        return self.request.target


def build_engine(onnx_path: str, target: Union[str, Target], precision: str, out_root: str,
                 calib_cache: Optional[str] = None, api: Optional[TrtApi] = None, dla_core: Optional[int] = None,
                 batch: Optional[BatchProfile] = None, workspace_mib: Optional[int] = None,
                 compute_capabilities: Optional[Sequence[str]] = None, use_timing_cache: bool = True,
                 progress: bool = True, force: bool = True, machine: Optional[hostinfo.HostInfo] = None,
                 echo: Optional[Callable[[str], None]] = None, softmax: bool = False,
                 frame_input: Optional[Tuple[int, int]] = None) -> BuildResult:
    """Build ``<out_root>/<target>/<model>/<precision>/model.engine`` + ``model.engine.json``.

    ``onnx_path`` is the exported ``model.onnx`` folder or one ONNX file (see
    :func:`engines.inputs.locate`). Both files appear together or not at all (a failed build
    leaves any earlier engine untouched). With ``force=False`` an engine whose build key matches
    is kept and returned with ``skipped=True``. ``softmax`` appends a Softmax (the engine then
    outputs ``probabilities``; for DeepStream) and builds into ``<precision>-softmax/``.
    ``frame_input`` (H, W) builds the variant whose graph takes camera frames (pipeline.frame_variant)
    into ``<precision>-frame-<W>x<H>/``. Unsupported when this machine cannot build the target (:func:`why_not_here`).
    """
    request = BuildRequest.resolve(target, precision, dla_core, batch=batch, workspace_mib=workspace_mib,
                                   compute_capabilities=compute_capabilities, calib_cache=calib_cache, softmax=softmax,
                                   frame_input=frame_input)
    api = api or import_tensorrt(prefer=request.target.flavour)
    machine = machine or hostinfo.detect()
    reason = why_not_here(request.target, api, machine)
    if reason:
        raise Unsupported(reason)
    return build(request, onnx_path, out_root, api, machine,
                 BuildOptions(use_timing_cache=use_timing_cache, progress=progress, force=force, echo=echo))


def build(request: BuildRequest, onnx_path: str, out_root: str, api: TrtApi, machine: hostinfo.HostInfo,
          options: BuildOptions) -> BuildResult:
    """Plan, then (under the engine folder's run lock) keep an up-to-date engine or build it;
    for a machine :func:`why_not_here` found able to build ``request.target``."""
    plan = plan_build(request, onnx_path, out_root, api, machine)
    with publish.RunLock(os.path.dirname(plan.engine_path), "build %s %s" % (plan.target.name, request.precision)):
        if not options.force:
            kept = _kept_if_up_to_date(plan.engine_path, plan.key)
            if kept is not None:
                return kept
        return run_build(plan, options)


def plan_build(request: BuildRequest, onnx_path: str, out_root: str, api: TrtApi,
               machine: hostinfo.HostInfo) -> BuildPlan:
    """Locate and check the inputs, the opset and the API, choose the network mode; no TensorRT call."""
    t = request.target
    require_builder_api(api)
    inputs = locate(onnx_path, t, request.precision, request.calib_cache, dla_core=request.dla_core,
                    frame_input=request.frame_input)
    opset = onnx_info.default_opset(inputs.onnx_path)
    t.check_opset(opset, os.path.basename(inputs.onnx_path))
    mode = resolve_network_mode(api, t, request.precision, request.dla_core)
    mode.softmax = request.softmax
    batch = t.batch_for(mode.dla_core, request.batch)
    workspace_mib = request.workspace_mib or t.workspace_mib
    ccs = sorted(request.compute_capabilities or t.compute_capabilities, key=cc_key)
    key = build_key(inputs, t, api, mode, batch, workspace_mib, ccs)
    out_dir = engine_dir(out_root, t, inputs.manifest.model.name, request.precision, mode.dla_core, request.softmax,
                         frame_input_size(inputs.manifest.io))
    return BuildPlan(request=request, inputs=inputs, api=api, machine=machine, mode=mode, batch=batch,
                     workspace_mib=workspace_mib, ccs=ccs, opset=opset, out_root=out_root,
                     engine_path=os.path.join(out_dir, ENGINE_NAME), key=key)


def run_build(plan: BuildPlan, options: BuildOptions) -> BuildResult:
    """Network from ONNX -> config -> serialized plan -> manifest -> engine, manifest and log
    published together (the Polygraphy loader chain, one step a function)."""
    api = plan.api
    logger = trt_hooks.make_logger(api, options.echo)
    trt_builder, network, replaced_output = network_from_onnx(plan, logger)
    calibrator = _calibrator(plan)
    config, shapes = _configure(api, trt_builder, network, plan.target, plan.mode, plan.batch, plan.workspace_mib,
                                plan.ccs, calibrator, _monitor(plan, options))
    tc_path = timing_cache_path(plan.out_root, plan.target, api) if (options.use_timing_cache and
                                                                     api.timing_cache) else None
    tc_loaded = _load_timing_cache(api, config, tc_path) if tc_path else False
    data, build_s = serialize(plan, trt_builder, network, config, logger, calibrator)
    log_text = logger.text()
    layers = parse_layers_log(log_text)
    if tc_path:
        atomic.write_bytes(tc_path, bytes(memoryview(config.get_timing_cache().serialize())))
    stage = engine_stage(plan, len(data), build_s, layers, shapes, replaced_output,
                         {"path": tc_path, "loaded": tc_loaded} if tc_path else
                         {"path": None, "note": "not used: TensorRT-RTX timing caches are no-ops" if api.is_rtx
                          else "disabled"})
    io = _io_with_softmax(plan.inputs.manifest.io, replaced_output) if replaced_output else None
    manifest = mf.derive(plan.inputs.manifest, plan.inputs.onnx_path, "engine", stage, io=io,
                         artifact_path=plan.engine_path)
    log_path = plan.engine_path + ".log"
    _write_engine(plan.engine_path, data, manifest, log_path, log_text)
    return BuildResult(engine_path=plan.engine_path, manifest=manifest, layers=layers, log_text=log_text,
                       build_s=build_s, log_path=log_path, timing_cache_path=tc_path)


def network_from_onnx(plan: BuildPlan, logger: Any) -> Tuple[Any, Any, Optional[str]]:
    """A TensorRT builder and the network parsed from the plan's ONNX (with the Softmax appended
    when asked); returns (builder, network, name of the logits output the Softmax replaced)."""
    api, trt = plan.api, plan.api.module
    trt_builder = trt.Builder(logger)
    flags = 0
    if plan.mode.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if api.explicit_batch_flag_needed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    _check_dla_cores(trt_builder, plan.mode, plan.target)
    network = trt_builder.create_network(flags)
    _parse(api, network, logger, plan.inputs.onnx_path)
    replaced_output = _append_softmax(api, network, plan.mode) if plan.mode.softmax else None
    return trt_builder, network, replaced_output


def _calibrator(plan: BuildPlan) -> Any:
    """The cache-replaying INT8 calibrator of an implicit INT8 build, else None."""
    if not plan.mode.implicit_int8:
        return None
    with open(plan.inputs.calibration.path, "rb") as f:  # type: ignore[union-attr]
        return trt_hooks.make_cache_calibrator(plan.api, f.read(), plan.batch.opt)


def _monitor(plan: BuildPlan, options: BuildOptions) -> Any:
    """TensorRT's progress monitor where the API has one (else one line saying the build started)."""
    if not options.progress:
        return None
    if plan.api.progress_monitor:
        return trt_hooks.make_progress_monitor(plan.api)
    (options.echo or trt_hooks.stderr_echo)("build: %s %s with %s (no progress monitor in this TensorRT) ..."
                                            % (plan.target.name, plan.request.precision, plan.api.label))
    return None


def serialize(plan: BuildPlan, trt_builder: Any, network: Any, config: Any, logger: Any,
              calibrator: Any) -> Tuple[bytes, float]:
    """``build_serialized_network``: the plan's bytes and the build time in seconds; a failed build
    is one UserError with TensorRT's last errors (and the calibration cache named when it lacked scales)."""
    start = time.perf_counter()
    serialized = trt_builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - start
    if serialized is None:
        detail = " | ".join(logger.errors()[-3:]) or "no error message"
        if calibrator is not None and calibrator.asked_for_data:
            detail = ("the calibration cache %s has no scales for some tensors of %s (TensorRT asked for calibration "
                      "data); re-run make calibrate for this ONNX. %s" % (plan.inputs.calibration.path,  # type: ignore
                                                                          plan.inputs.onnx_path, detail))
        raise UserError("TensorRT could not build %s %s from %s: %s" % (plan.target.name, plan.request.precision,
                                                                        plan.inputs.onnx_path, detail))
    return bytes(memoryview(serialized)), build_s


def engine_stage(plan: BuildPlan, engine_bytes: int, build_s: float, layers: LayerSummary,
                 shapes: Dict[str, Any], replaced_output: Optional[str],
                 timing_cache: Dict[str, Any]) -> Dict[str, Any]:
    """The engine manifest's ``stage`` record (what was built, with what, where, how long)."""
    t, api, machine, mode, inputs = plan.target, plan.api, plan.machine, plan.mode, plan.inputs
    precision = plan.request.precision
    return {
        "summary": _summary_line(t, precision, api, engine_bytes, build_s, plan.ccs, layers, machine),
        "target": t.name, "target_description": t.description, "platform": t.platform, "precision": precision,
        "int8_mode": (t.int8_mode if precision == "int8" else None),
        "tensorrt": {"flavour": api.flavour, "version": api.version, "label": api.label,
                     "onnx_parser": _parser_version(api), "features": api.features()},
        "cuda": {"version": hostinfo.cuda_version(api)},
        "device": {"builder_device": machine.gpu.name if machine.gpu else None,
                   "compute_capability": machine.gpu.compute_capability if (machine.gpu and not api.is_rtx) else None,
                   "aot_compute_capabilities": list(plan.ccs) if api.is_rtx else None,
                   "target_compute_capabilities": list(t.compute_capabilities),
                   "hardware_compatibility": t.hardware_compatibility,
                   "jetson": {"model": machine.jetson_model, "l4t": machine.l4t_release,
                              "power_mode": machine.power_mode} if machine.jetson else None,
                   "jetpack_required": t.jetpack or None},
        "network": {"strongly_typed": mode.strongly_typed, "builder_flags": mode.flags,
                    "implicit_int8_calibrator": mode.implicit_int8},
        "dla": {"core": mode.dla_core, "gpu_fallback": t.dla.gpu_fallback if mode.dla_core >= 0 else None},
        "output": {"softmax": True, "name": SOFTMAX_OUTPUT, "replaces": replaced_output} if replaced_output else
        {"softmax": False},
        "batch_profile": {"min": plan.batch.min, "opt": plan.batch.opt, "max": plan.batch.max, "shapes": shapes},
        "workspace_mib": plan.workspace_mib, "optimization_level": t.optimization_level,
        "onnx": {"file": os.path.basename(inputs.onnx_path), "sha256": inputs.manifest.artifact.get("sha256"),
                 "kind": inputs.manifest.kind, "opset": plan.opset,
                 "manifest": os.path.basename(mf.sidecar(inputs.onnx_path)), "manifest_sha256": inputs.manifest_sha256},
        "calibration": inputs.calibration.record(used=mode.implicit_int8) if inputs.calibration else None,
        "timing_cache": timing_cache,
        "build_s": round(build_s, 3), "engine_bytes": engine_bytes,
        "layers": layers.to_dict(),
        "build_key": plan.key,
    }


def _parser_version(api: TrtApi) -> Optional[int]:
    fn = getattr(api.module, "get_nv_onnx_parser_version", None)
    try:
        return int(fn()) if fn else None
    except Exception:  # informational only
        return None


def _write_engine(engine_path: str, data: bytes, manifest: mf.Manifest, log_path: str, log_text: str) -> None:
    """Engine, manifest and builder log are published together (:class:`pipeline.publish.Publication`),
    the engine last."""
    with publish.Publication(os.path.dirname(engine_path)) as pub:
        with open(pub.add(log_path), "w", encoding="utf-8") as f:
            f.write(log_text + "\n")
        with open(pub.add(engine_path), "wb") as f:
            f.write(data)
        pub.write_manifest(manifest, engine_path)
        pub.last(engine_path)


def _kept_if_up_to_date(engine_path: str, key: Dict[str, Any]) -> Optional[BuildResult]:
    if not (os.path.isfile(engine_path) and os.path.isfile(mf.sidecar(engine_path))):
        return None
    try:
        m = mf.read(engine_path, expect_kind="engine")
    except UserError:
        return None
    if m.stage.get("build_key") != key:
        return None
    layers = LayerSummary(**m.stage["layers"]) if isinstance(m.stage.get("layers"), dict) else LayerSummary("none")
    log_path = engine_path + ".log"
    log_text = ""
    if os.path.isfile(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log_text = f.read()
    return BuildResult(engine_path=engine_path, manifest=m, layers=layers, log_text=log_text,
                       build_s=float(m.stage.get("build_s", 0.0)), log_path=log_path, skipped=True)
