"""Feature detection against the real attribute sets of each TensorRT generation.

The surfaces in tests/data/trt_api/ come from the live tensorrt_rtx module, the published
tensorrt-stubs 10.13 package and NVIDIA's pybind11 sources for 8.5, 8.6 and 11.1 (see its README).
Each is turned into an attribute-only stand-in module; nothing on it can be called, so these
tests cover detection and the build-mode decisions, not the TensorRT calls themselves.
"""
import json
import os

import pytest

from inception_deploy.engines import api_surface, builder, host, targets, trt_api
from inception_deploy.pipeline.errors import Unsupported, UserError

DATA = os.path.join(os.path.dirname(__file__), "data", "trt_api")
GENERATIONS = ("tensorrt-8.5", "tensorrt-8.6", "tensorrt-10.13", "tensorrt-11.1", "tensorrt_rtx-1.7")


def surface(name):
    with open(os.path.join(DATA, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


def api_of(name):
    flavour = "tensorrt_rtx" if name.startswith("tensorrt_rtx") else "tensorrt"
    return trt_api.from_module(api_surface.stand_in(surface(name), flavour))


# What each generation offers, as its published API says (not as its version number says).
EXPECTED = {
    "tensorrt-8.5": dict(strongly_typed=False, explicit_batch_flag_needed=True, fp16_flag=True, int8_flag=True,
                         int8_calibrator=True, dla=True, progress_monitor=False, optimization_level=False,
                         hardware_compatibility=False, timing_cache=True, memory_pool_limits=True),
    "tensorrt-8.6": dict(strongly_typed=False, explicit_batch_flag_needed=True, fp16_flag=True, int8_flag=True,
                         int8_calibrator=True, dla=True, progress_monitor=False, optimization_level=True,
                         hardware_compatibility=True, timing_cache=True, memory_pool_limits=True),
    "tensorrt-10.13": dict(strongly_typed=True, explicit_batch_flag_needed=False, fp16_flag=True, int8_flag=True,
                           int8_calibrator=True, dla=True, progress_monitor=True, optimization_level=True,
                           hardware_compatibility=True, timing_cache=True, memory_pool_limits=True),
    "tensorrt-11.1": dict(strongly_typed=True, explicit_batch_flag_needed=False, fp16_flag=False, int8_flag=False,
                          int8_calibrator=False, dla=True, progress_monitor=True, optimization_level=True,
                          hardware_compatibility=True, timing_cache=True, memory_pool_limits=True),
    "tensorrt_rtx-1.7": dict(strongly_typed=True, explicit_batch_flag_needed=False, fp16_flag=False,
                             int8_flag=False, int8_calibrator=False, dla=False, progress_monitor=True,
                             optimization_level=True, hardware_compatibility=True, timing_cache=False,
                             memory_pool_limits=True),
}


@pytest.mark.parametrize("name", GENERATIONS)
def test_feature_detection_per_generation(name):
    api = api_of(name)
    features = api.features()
    for key, value in EXPECTED[name].items():
        assert features[key] is value, (name, key)
    assert features["detailed_profiling"] and features["serialized_build"] and features["parse_from_file"]


def test_only_tensorrt_rtx_builds_ahead_of_time():
    assert api_of("tensorrt_rtx-1.7").aot_compute_capabilities == ["7.5", "8.0", "8.6", "8.9", "12.0", "12.1"]
    for name in GENERATIONS[:-1]:
        assert api_of(name).aot_compute_capabilities == []


def test_rtx_has_dla_and_timing_cache_names_but_not_the_features():
    """The flavour matters: TensorRT-RTX keeps DeviceType.DLA and the timing-cache calls."""
    s = surface("tensorrt_rtx-1.7")
    assert "DLA" in s["classes"]["DeviceType"] and "DLA_core" in s["classes"]["IBuilderConfig"]
    assert "create_timing_cache" in s["classes"]["IBuilderConfig"]
    api = api_of("tensorrt_rtx-1.7")
    assert not api.dla and not api.timing_cache


def test_live_tensorrt_rtx_module_matches_its_snapshot():
    live = trt_api.import_tensorrt("tensorrt_rtx")
    assert live.flavour == "tensorrt_rtx" and live.is_rtx
    assert live.features() == api_of("tensorrt_rtx-1.7").features()


def test_stub_and_source_readers_agree_on_tensorrt_10_13():
    """The pybind-source reader (used for 8.5, 8.6, 11.1) against the published stubs (10.13)."""
    stubs, source = surface("tensorrt-10.13"), surface("tensorrt-10.13-pybind")
    enum_helpers = {"name", "value", "Members", "itemsize"}
    for cls in ("Builder", "IBuilderConfig", "BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType",
                "DeviceType", "ProfilingVerbosity", "OnnxParser", "IInt8EntropyCalibrator2", "IProgressMonitor"):
        a = set(stubs["classes"][cls]) - enum_helpers
        b = set(source["classes"][cls]) - enum_helpers - {"gpu_allocator"}  # write-only: stubgen drops it
        assert a == b, (cls, sorted(a ^ b))
    assert api_of("tensorrt-10.13").features() == trt_api.from_module(
        api_surface.stand_in(source, "tensorrt")).features()


def test_import_tensorrt_refuses_clearly_when_neither_is_importable(monkeypatch):
    def fail(name):
        raise ImportError("No module named %r" % name)

    monkeypatch.setattr(trt_api.importlib, "import_module", fail)
    with pytest.raises(Unsupported) as e:
        trt_api.import_tensorrt()
    text = str(e.value)
    assert "tensorrt:" in text and "tensorrt_rtx:" in text and "pip install tensorrt-rtx" in text
    assert "\n" not in text and e.value.exit_code == 3


def test_import_tensorrt_falls_back_to_the_other_flavour():
    api = trt_api.import_tensorrt(prefer="tensorrt")  # full TensorRT is not installable here
    assert api.flavour == "tensorrt_rtx" and api.version == api.module.__version__
    with pytest.raises(ValueError):
        trt_api.import_tensorrt(prefer="onnxruntime")


# -- build-mode decisions per generation -------------------------------------------------------------
T = targets.resolve_target


@pytest.mark.parametrize("name,target,precision,expected", [
    ("tensorrt-8.5", "jetson-xavier", "int8", (False, ["INT8"], True)),        # implicit: FP32 ONNX + cache
    ("tensorrt-8.5", "jetson-orin-jp5", "fp16", (False, ["FP16"], False)),
    ("tensorrt-8.6", "jetson-orin", "int8", (False, ["INT8"], False)),         # Q/DQ with the INT8 flag
    ("tensorrt-8.6", "jetson-orin", "fp32", (False, [], False)),
    ("tensorrt-10.13", "jetson-orin", "int8", (True, [], False)),              # strongly typed
    ("tensorrt-10.13", "jetson-orin-jp5", "int8", (False, ["INT8"], True)),    # 10.x still calibrates
    ("tensorrt-11.1", "datacenter-hopper", "fp16", (True, [], False)),
    ("tensorrt_rtx-1.7", "rtx", "int8", (True, [], False)),
])
def test_network_mode(name, target, precision, expected):
    mode = builder.resolve_network_mode(api_of(name), T(target), precision)
    assert (mode.strongly_typed, mode.flags, mode.implicit_int8) == expected


def test_implicit_int8_on_tensorrt_11_says_what_is_missing_and_what_works():
    with pytest.raises(Unsupported) as e:
        builder.resolve_network_mode(api_of("tensorrt-11.1"), T("jetson-xavier"), "int8")
    text = str(e.value)
    assert "IInt8EntropyCalibrator2" in text and "TensorRT 11.1" in text and "int8_mode" in text


def test_dla_needs_a_tensorrt_with_dla():
    mode = builder.resolve_network_mode(api_of("tensorrt-8.6"), T("jetson-orin"), "int8", dla_core=1)
    assert mode.flags == ["INT8", "FP16", "GPU_FALLBACK"] and not mode.strongly_typed and mode.dla_core == 1
    with pytest.raises(Unsupported, match="DLA support"):
        builder.resolve_network_mode(api_of("tensorrt_rtx-1.7"), T("jetson-orin"), "fp16", dla_core=0)


def _machine(jetson=False, cc=None):
    gpu = host.GpuInfo("test GPU", cc, "test") if cc else None
    return host.HostInfo(jetson=jetson, gpu=gpu)


def test_why_not_here():
    rtx, trt10 = api_of("tensorrt_rtx-1.7"), api_of("tensorrt-10.13")
    assert builder.why_not_here(T("rtx"), rtx, _machine()) is None            # AOT: no GPU needed
    assert "TensorRT-RTX plans" in builder.why_not_here(T("rtx"), trt10, _machine(cc="8.6"))
    assert "not TensorRT plans" in builder.why_not_here(T("jetson"), rtx, _machine())
    assert "on the Jetson itself" in builder.why_not_here(T("jetson"), trt10, _machine(cc="8.6"))
    assert builder.why_not_here(T("jetson"), trt10, _machine(jetson=True, cc="8.7")) is None
    assert builder.why_not_here(T("datacenter-hopper"), trt10, _machine(cc="9.0")) is None
    assert "compute capability 8.0" in builder.why_not_here(T("datacenter-hopper"), trt10, _machine(cc="8.0"))
    assert "no CUDA GPU" in builder.why_not_here(T("datacenter-ada"), trt10, _machine())
    assert "no TensorRT" in builder.why_not_here(T("rtx"), None, _machine())


def test_fp32_on_dla_is_refused_with_the_way_out():
    with pytest.raises(UserError, match="FP16 or INT8 only"):
        T("jetson-orin").check_precision("fp32", dla_core=0)


def test_cache_calibrator_serves_the_cache_and_no_data():
    """The implicit-INT8 calibrator (TensorRT <= 10; not importable here): subclassing a stand-in for
    the pybind11 base, as the real module's IInt8EntropyCalibrator2 is subclassed."""
    import types

    from inception_deploy.engines import trt_hooks

    class Base(object):
        def __init__(self):
            self.base_initialised = True

    module = types.ModuleType("tensorrt")
    module.IInt8EntropyCalibrator2 = Base
    calibrator = trt_hooks.make_cache_calibrator(trt_api.from_module(module), b"TRT-8601-EntropyCalibration2\n", 4)
    assert isinstance(calibrator, Base) and calibrator.base_initialised
    assert calibrator.get_batch_size() == 4
    assert calibrator.read_calibration_cache() == b"TRT-8601-EntropyCalibration2\n"
    assert not calibrator.asked_for_data and calibrator.get_batch(["input"]) is None and calibrator.asked_for_data
    calibrator.write_calibration_cache(memoryview(b"x"))
    assert calibrator.written == b"x"


@pytest.mark.parametrize("name, flavour, major, minor", [
    ("tensorrt-8.5", "tensorrt", 8, 5), ("tensorrt-8.6", "tensorrt", 8, 6), ("tensorrt-10.13", "tensorrt", 10, 13),
    ("tensorrt-11.1", "tensorrt", 11, 1), ("tensorrt_rtx-1.7", "tensorrt_rtx", 0, 0)])
def test_target_capabilities_match_what_each_generation_really_has(name, flavour, major, minor):
    """The trtexec lines decide the network mode from the target's TensorRT version alone
    (TargetCapabilities); that must be what the real attribute set of that generation detects."""
    detected = api_of(name)
    caps = trt_api.TargetCapabilities.of(flavour, major, minor, has_dla=True)
    for feature in ("strongly_typed", "fp16_flag", "int8_flag", "int8_calibrator"):
        assert getattr(caps, feature) == getattr(detected, feature), (name, feature)
    if major and major < 11:
        assert caps.dla == detected.dla is True
    # and the builder reaches the same decision from either
    orin = targets.resolve_target("jetson-orin")
    for precision, core in (("int8", -1), ("fp16", -1), ("int8", 0), ("fp16", 0)):
        try:
            want = builder.resolve_network_mode(detected, orin, precision, core)
        except Exception as e:  # noqa: BLE001 - the same refusal is expected from both
            with pytest.raises(type(e)):
                builder.resolve_network_mode(caps, orin, precision, core)
            continue
        assert builder.resolve_network_mode(caps, orin, precision, core) == want


def test_every_supported_generation_has_what_the_builder_requires():
    """The builder uses only build_serialized_network and memory-pool limits (TensorRT 8.4+); each
    supported generation has both, and an older API (pre-8.4: max_workspace_size, no memory pools)
    is refused in one line naming what it lacks."""
    for name in GENERATIONS:
        builder.require_builder_api(api_of(name))
    old = surface("tensorrt-8.5")
    old["classes"]["IBuilderConfig"] = [n for n in old["classes"]["IBuilderConfig"] if n != "set_memory_pool_limit"]
    old["classes"]["Builder"] = [n for n in old["classes"]["Builder"] if n != "build_serialized_network"]
    with pytest.raises(Unsupported) as e:
        builder.require_builder_api(trt_api.from_module(api_surface.stand_in(old, "tensorrt")))
    text = str(e.value)
    assert "set_memory_pool_limit" in text and "build_serialized_network" in text and "TensorRT 8.5" in text
    assert "\n" not in text and e.value.exit_code == 3
