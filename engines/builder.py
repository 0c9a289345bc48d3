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

from engines import host as hostinfo
from engines import onnx_info, trt_hooks
from engines.inputs import BuildInputs, locate
from engines.layers import LayerSummary, parse_layers_log
from engines.targets import BatchProfile, Target, resolve_target
from engines.trt_api import TargetCapabilities, TrtApi, cc_key, cc_to_sm, import_tensorrt
from pipeline import atomic
from pipeline import manifest as mf
from pipeline import publish
from pipeline.hashing import file_sha256
from pipeline.errors import Unsupported, UserError
from pipeline.frame_io import frame_input_size, frame_size_name

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
    from pipeline.paths import path_component

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
    if api.memory_pool_limits:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    elif api.max_workspace_size:
        config.max_workspace_size = workspace_mib << 20
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
    into ``<precision>-frame-<W>x<H>/``.
    """
    t = resolve_target(target) if isinstance(target, str) else target
    core = t.dla.core if dla_core is None else dla_core
    t.check_precision(precision, core)
    inputs = locate(onnx_path, t, precision, calib_cache, dla_core=core, frame_input=frame_input)
    api = api or import_tensorrt(prefer=t.flavour)
    machine = machine or hostinfo.detect()
    reason = why_not_here(t, api, machine)
    if reason:
        raise Unsupported(reason)
    opset = onnx_info.default_opset(inputs.onnx_path)
    t.check_opset(opset, os.path.basename(inputs.onnx_path))
    mode = resolve_network_mode(api, t, precision, core)
    mode.softmax = softmax
    batch = t.batch_for(mode.dla_core, batch)
    workspace_mib = workspace_mib or t.workspace_mib
    ccs = sorted(compute_capabilities or t.compute_capabilities, key=cc_key)
    key = build_key(inputs, t, api, mode, batch, workspace_mib, ccs)
    out_dir = engine_dir(out_root, t, inputs.manifest.model.name, precision, mode.dla_core, softmax,
                         frame_input_size(inputs.manifest.io))
    engine_path = os.path.join(out_dir, ENGINE_NAME)
    with publish.RunLock(out_dir, "build %s %s" % (t.name, precision)):
        if not force:
            kept = _kept_if_up_to_date(engine_path, key)
            if kept is not None:
                return kept
        return _build(inputs, t, precision, api, machine, mode, batch, workspace_mib, ccs, key, opset, out_root,
                      engine_path, use_timing_cache, progress, echo)


def _build(inputs: BuildInputs, t: Target, precision: str, api: TrtApi, machine: hostinfo.HostInfo,
           mode: NetworkMode, batch: BatchProfile, workspace_mib: int, ccs: Sequence[str], key: Dict[str, Any],
           opset: int, out_root: str, engine_path: str, use_timing_cache: bool, progress: bool,
           echo: Optional[Callable[[str], None]]) -> BuildResult:
    """Parse, configure, build and publish (engine, manifest and log together); see :func:`build_engine`.

    Long because it is the one place the TensorRT objects live: split further, each part would
    take half of them as arguments."""
    trt = api.module
    logger = trt_hooks.make_logger(api, echo)
    builder = trt.Builder(logger)
    flags = 0
    if mode.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if api.explicit_batch_flag_needed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    _check_dla_cores(builder, mode, t)
    network = builder.create_network(flags)
    _parse(api, network, logger, inputs.onnx_path)
    replaced_output = _append_softmax(api, network, mode) if mode.softmax else None
    calibrator = None
    if mode.implicit_int8:
        with open(inputs.calibration.path, "rb") as f:  # type: ignore[union-attr]
            calibrator = trt_hooks.make_cache_calibrator(api, f.read(), batch.opt)
    monitor = trt_hooks.make_progress_monitor(api) if (progress and api.progress_monitor) else None
    if progress and monitor is None:
        (echo or trt_hooks.stderr_echo)("build: %s %s with %s (no progress monitor in this TensorRT) ..."
                                        % (t.name, precision, api.label))
    config, shapes = _configure(api, builder, network, t, mode, batch, workspace_mib, ccs, calibrator, monitor)
    tc_path = timing_cache_path(out_root, t, api) if (use_timing_cache and api.timing_cache) else None
    tc_loaded = _load_timing_cache(api, config, tc_path) if tc_path else False

    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    build_s = time.perf_counter() - start
    log_text = logger.text()
    if plan is None:
        detail = " | ".join(logger.errors()[-3:]) or "no error message"
        if calibrator is not None and calibrator.asked_for_data:
            detail = ("the calibration cache %s has no scales for some tensors of %s (TensorRT asked for calibration "
                      "data); re-run make calibrate for this ONNX. %s" % (inputs.calibration.path,  # type: ignore
                                                                          inputs.onnx_path, detail))
        raise UserError("TensorRT could not build %s %s from %s: %s" % (t.name, precision, inputs.onnx_path, detail))
    data = bytes(memoryview(plan))
    layers = parse_layers_log(log_text)

    if tc_path:
        serialized = config.get_timing_cache().serialize()
        atomic.write_bytes(tc_path, bytes(memoryview(serialized)))
    stage = {
        "summary": _summary_line(t, precision, api, len(data), build_s, ccs, layers, machine),
        "target": t.name, "target_description": t.description, "platform": t.platform, "precision": precision,
        "int8_mode": (t.int8_mode if precision == "int8" else None),
        "tensorrt": {"flavour": api.flavour, "version": api.version, "label": api.label,
                     "onnx_parser": _parser_version(api), "features": api.features()},
        "cuda": {"version": hostinfo.cuda_version(api)},
        "device": {"builder_device": machine.gpu.name if machine.gpu else None,
                   "compute_capability": machine.gpu.compute_capability if (machine.gpu and not api.is_rtx) else None,
                   "aot_compute_capabilities": list(ccs) if api.is_rtx else None,
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
        "batch_profile": {"min": batch.min, "opt": batch.opt, "max": batch.max,
                          "shapes": shapes},
        "workspace_mib": workspace_mib, "optimization_level": t.optimization_level,
        "onnx": {"file": os.path.basename(inputs.onnx_path), "sha256": inputs.manifest.artifact.get("sha256"),
                 "kind": inputs.manifest.kind, "opset": opset, "manifest": os.path.basename(mf.sidecar(inputs.onnx_path)),
                 "manifest_sha256": inputs.manifest_sha256},
        "calibration": inputs.calibration.record(used=mode.implicit_int8) if inputs.calibration else None,
        "timing_cache": {"path": tc_path, "loaded": tc_loaded} if tc_path else
        {"path": None, "note": "not used: TensorRT-RTX timing caches are no-ops" if api.is_rtx else "disabled"},
        "build_s": round(build_s, 3), "engine_bytes": len(data),
        "layers": layers.to_dict(),
        "build_key": key,
    }
    io = _io_with_softmax(inputs.manifest.io, replaced_output) if replaced_output else None
    manifest = mf.derive(inputs.manifest, inputs.onnx_path, "engine", stage, io=io, artifact_path=engine_path)
    log_path = engine_path + ".log"
    _write_engine(engine_path, data, manifest, log_path, log_text)
    return BuildResult(engine_path=engine_path, manifest=manifest, layers=layers, log_text=log_text, build_s=build_s,
                       log_path=log_path, timing_cache_path=tc_path)


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
