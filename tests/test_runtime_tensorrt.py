"""The TensorRT runner (runtime.backends.tensorrt) against a RECORDING FAKE of TensorRT and CUDA.

The real path cannot run on the development/CI machines (no GPU, no driver, no TensorRT runtime):
it has NOT been executed here. The fakes are shaped by the real APIs installed in .venv:
``tensorrt_rtx`` (class/method names and pybind signatures, real enums ``TensorIOMode``,
``DataType``, ``CudaGraphStrategy``, real ``Logger``) and cuda-python's ``cuda.bindings.runtime``
(function names, argument order, ``(error, value)`` results, real ``cudaError_t`` /
``cudaMemcpyKind`` / ``cudaStreamCaptureMode``), checked by ``test_fakes_are_shaped_by_the_real_apis``;
the TensorRT names the runner calls are also checked against the API snapshots of TensorRT 8.5,
8.6, 10.13, 11.1 and TensorRT-RTX 1.7 in tests/data/trt_api.

The fake "GPU" keeps device memory in host RAM and really moves bytes: cudaMemcpyAsync copies,
``execute_async_v3`` reads the input from the address bound with ``set_tensor_address`` and writes
logits (a fixed linear model) to the bound output, captured work runs at ``cudaGraphLaunch``. So a
wrong order (execute before the input copy, a missing binding, a stale shape) gives wrong numbers,
not just a different log.
"""
import ctypes
import inspect
import json
import os
import re
import types
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

import tensorrt_rtx
from cuda.bindings import runtime as real_cudart

from inception_deploy.engines.trt_api import from_module
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.pipeline.preprocess import Preprocessing
from inception_deploy.runtime.backends import tensorrt as trt_backend
from inception_deploy.runtime.backends.cudamem import CudaError, CudaRuntimeApi, PycudaApi

OK = real_cudart.cudaError_t.cudaSuccess
H = W = 8
CLASSES = 5
MAX_BATCH = 8
ENGINE_BYTES = b"fake-plan:" + bytes(range(64))
RNG = np.random.default_rng(7)
WEIGHTS = RNG.standard_normal((3 * H * W, CLASSES)).astype(np.float32)
BIAS = RNG.standard_normal(CLASSES).astype(np.float32)
SNAPSHOTS = os.path.join(os.path.dirname(__file__), "data", "trt_api")
FAKE_VERSIONS = {"tensorrt": "10.3.0.30", "tensorrt_rtx": "1.7.1.116"}


def reference_logits(batch: np.ndarray) -> np.ndarray:
    return batch.reshape(batch.shape[0], -1) @ WEIGHTS + BIAS


# -- the fake GPU: cuda.bindings.runtime --------------------------------------------------------
class FakeStream:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __int__(self) -> int:   # cudaStream_t converts to its address with int()
        return self.handle


class FakeCudart:
    """``cuda.bindings.runtime`` stand-in: same names, argument order and ``(err, value)`` results."""

    cudaError_t = real_cudart.cudaError_t
    cudaMemcpyKind = real_cudart.cudaMemcpyKind
    cudaStreamCaptureMode = real_cudart.cudaStreamCaptureMode
    cudaStreamNonBlocking = real_cudart.cudaStreamNonBlocking
    cudaHostAllocMapped = real_cudart.cudaHostAllocMapped

    def __init__(self, calls: List[Tuple[str, str, tuple]], fail: Optional[Dict[str, Any]] = None,
                 devices: int = 1, integrated: bool = False) -> None:
        self.calls = calls
        self.integrated = integrated
        self.mapped: set = set()
        self.fail = dict(fail or {})      # call name -> error code (or (error, nth call))
        self.devices = devices
        self.pinned: Dict[int, Any] = {}
        self.device_mem: Dict[int, Any] = {}
        self.capturing: Dict[int, List[Any]] = {}
        self.live = {"streams": 0, "events": 0, "graph_execs": 0, "graphs": 0}
        self._next = 0x1000
        self._counts: Dict[str, int] = {}

    # bookkeeping
    def _enter(self, name: str, *args: Any) -> Optional[Any]:
        self.calls.append(("cuda", name, args))
        self._counts[name] = self._counts.get(name, 0) + 1
        rule = self.fail.get(name)
        if rule is None:
            return None
        code, nth = rule if isinstance(rule, tuple) else (rule, 1)
        return code if self._counts[name] == nth else None

    def _handle(self) -> int:
        self._next += 0x10
        return self._next

    @staticmethod
    def _inside(blocks: Dict[int, Any], address: int, count: int) -> bool:
        return any(base <= address and address + count <= base + ctypes.sizeof(buf) for base, buf in blocks.items())

    def on_stream(self, stream: Any, op: Any) -> None:
        """Run ``op`` now, or record it when ``stream`` is being captured."""
        captured = self.capturing.get(int(stream))
        if captured is not None:
            captured.append(op)
        else:
            op()

    # device
    def cudaGetDeviceCount(self):
        err = self._enter("cudaGetDeviceCount")
        return (err, None) if err else (OK, self.devices)

    def cudaSetDevice(self, device):
        return (self._enter("cudaSetDevice", device) or OK,)

    def cudaGetDeviceProperties(self, device):
        self._enter("cudaGetDeviceProperties", device)
        return OK, types.SimpleNamespace(name=b"NVIDIA Fake Orin\x00\x00\x00", major=8, minor=7,
                                         integrated=int(self.integrated), canMapHostMemory=int(self.integrated))

    def cudaGetErrorString(self, error):
        return OK, ("fake %s" % error.name).encode()

    # memory
    def cudaMallocHost(self, size):
        err = self._enter("cudaMallocHost", size)
        if err:
            return err, None
        buf = ctypes.create_string_buffer(size)
        self.pinned[ctypes.addressof(buf)] = buf
        return OK, ctypes.addressof(buf)

    def cudaHostAlloc(self, size, flags):
        err = self._enter("cudaHostAlloc", size, flags)
        if err:
            return err, None
        if flags != real_cudart.cudaHostAllocMapped:
            return self.cudaError_t.cudaErrorInvalidValue, None
        buf = ctypes.create_string_buffer(size)
        self.pinned[ctypes.addressof(buf)] = buf
        self.mapped.add(ctypes.addressof(buf))
        return OK, ctypes.addressof(buf)

    def cudaHostGetDevicePointer(self, pHost, flags):
        self._enter("cudaHostGetDevicePointer", pHost, flags)
        if pHost not in self.mapped:
            return self.cudaError_t.cudaErrorInvalidValue, None
        return OK, pHost        # unified addressing: the GPU sees mapped memory at the same address

    def cudaFreeHost(self, ptr):
        self._enter("cudaFreeHost", ptr)
        return (OK if self.pinned.pop(ptr, None) is not None else self.cudaError_t.cudaErrorInvalidValue,)

    def cudaMalloc(self, size):
        err = self._enter("cudaMalloc", size)
        if err:
            return err, None
        buf = ctypes.create_string_buffer(size)
        self.device_mem[ctypes.addressof(buf)] = buf
        return OK, ctypes.addressof(buf)

    def cudaFree(self, devPtr):
        self._enter("cudaFree", devPtr)
        return (OK if self.device_mem.pop(devPtr, None) is not None else self.cudaError_t.cudaErrorInvalidValue,)

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        self._enter("cudaMemcpyAsync", dst, src, count, kind, stream)
        h2d = kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice
        src_ok = self._inside(self.pinned if h2d else self.device_mem, src, count)
        dst_ok = self._inside(self.device_mem if h2d else self.pinned, dst, count)
        if not (src_ok and dst_ok):   # async copies must go between pinned host and device memory
            return (self.cudaError_t.cudaErrorInvalidValue,)
        self.on_stream(stream, lambda: ctypes.memmove(dst, src, count))
        return (OK,)

    # streams and events
    def cudaStreamCreateWithFlags(self, flags):
        self._enter("cudaStreamCreateWithFlags", flags)
        self.live["streams"] += 1
        return OK, FakeStream(self._handle())

    def cudaStreamSynchronize(self, stream):
        err = self._enter("cudaStreamSynchronize", stream)
        if int(stream) in self.capturing:
            return (self.cudaError_t.cudaErrorStreamCaptureUnsupported,)
        return (err or OK,)

    def cudaStreamDestroy(self, stream):
        self._enter("cudaStreamDestroy", stream)
        self.live["streams"] -= 1
        return (OK,)

    def cudaEventCreate(self):
        self._enter("cudaEventCreate")
        self.live["events"] += 1
        return OK, types.SimpleNamespace(handle=self._handle())

    def cudaEventRecord(self, event, stream):
        return (self._enter("cudaEventRecord", event, stream) or OK,)

    def cudaEventSynchronize(self, event):
        return (self._enter("cudaEventSynchronize", event) or OK,)

    def cudaEventElapsedTime(self, start, end):
        self._enter("cudaEventElapsedTime", start, end)
        return OK, 1.25

    def cudaEventDestroy(self, event):
        self._enter("cudaEventDestroy", event)
        self.live["events"] -= 1
        return (OK,)

    # graphs
    def cudaStreamBeginCapture(self, stream, mode):
        self._enter("cudaStreamBeginCapture", stream, mode)
        self.capturing[int(stream)] = []
        return (OK,)

    def cudaStreamEndCapture(self, stream):
        self._enter("cudaStreamEndCapture", stream)
        self.live["graphs"] += 1
        return OK, types.SimpleNamespace(ops=self.capturing.pop(int(stream)))

    def cudaGraphInstantiateWithFlags(self, graph, flags):
        self._enter("cudaGraphInstantiateWithFlags", graph, flags)
        self.live["graph_execs"] += 1
        return OK, types.SimpleNamespace(ops=list(graph.ops))

    def cudaGraphDestroy(self, graph):
        self._enter("cudaGraphDestroy", graph)
        self.live["graphs"] -= 1
        return (OK,)

    def cudaGraphLaunch(self, graphExec, stream):
        self._enter("cudaGraphLaunch", graphExec, stream)
        for op in graphExec.ops:
            op()
        return (OK,)

    def cudaGraphExecDestroy(self, graphExec):
        self._enter("cudaGraphExecDestroy", graphExec)
        self.live["graph_execs"] -= 1
        return (OK,)


# -- the fake TensorRT --------------------------------------------------------------------------
IO = {"input": (tensorrt_rtx.TensorIOMode.INPUT, (-1, 3, H, W)),
      "logits": (tensorrt_rtx.TensorIOMode.OUTPUT, (-1, CLASSES))}


class FakeRuntimeConfig:
    def __init__(self) -> None:
        self.cuda_graph_strategy = tensorrt_rtx.CudaGraphStrategy.DISABLED


class FakeExecutionContext:
    """``IExecutionContext``: shapes, addresses and an ``execute_async_v3`` that really computes."""

    def __init__(self, world: "FakeWorld", runtime_config: Optional[FakeRuntimeConfig]) -> None:
        self.world = world
        self.runtime_config = runtime_config
        self.shapes: Dict[str, Tuple[int, ...]] = {}
        self.addresses: Dict[str, int] = {}

    def _rec(self, name: str, *args: Any) -> None:
        self.world.calls.append(("trt", name, args))

    def set_input_shape(self, name, shape):
        self._rec("set_input_shape", name, tuple(shape))
        if IO[name][0] != tensorrt_rtx.TensorIOMode.INPUT or not 1 <= shape[0] <= MAX_BATCH:
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        self._rec("get_tensor_shape", name)
        n = self.shapes.get("input", (-1,))[0]
        return (n,) + IO[name][1][1:]

    def set_tensor_address(self, name, memory):
        self._rec("set_tensor_address", name, memory)
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle):
        self._rec("execute_async_v3", stream_handle)
        if set(self.addresses) != set(IO) or "input" not in self.shapes:
            return False                       # TensorRT refuses: unbound tensor or no input shape
        n = self.shapes["input"][0]
        addr_in, addr_out = self.addresses["input"], self.addresses["logits"]

        def run() -> None:
            raw = (ctypes.c_char * (n * 3 * H * W * 4)).from_address(addr_in)
            x = np.frombuffer(raw, dtype=np.float32).reshape(n, 3, H, W)
            y = reference_logits(x).astype(np.float32)
            ctypes.memmove(addr_out, y.ctypes.data, y.nbytes)

        self.world.cudart.on_stream(FakeStream(int(stream_handle)), run)
        return True


class FakeCudaEngine:
    def __init__(self, world: "FakeWorld") -> None:
        self.world = world

    @property
    def num_io_tensors(self):
        return len(IO)

    def get_tensor_name(self, index):
        return list(IO)[index]

    def get_tensor_mode(self, name):
        return IO[name][0]

    def get_tensor_dtype(self, name):
        return tensorrt_rtx.DataType.FLOAT

    def get_tensor_shape(self, name):
        return IO[name][1]

    def get_tensor_profile_shape(self, name, profile_index):
        assert profile_index == 0
        return [(1, 3, H, W), (4, 3, H, W), (MAX_BATCH, 3, H, W)]

    def create_runtime_config(self):
        self.world.calls.append(("trt", "create_runtime_config", ()))
        return FakeRuntimeConfig()

    def create_execution_context(self, runtime_config=None):
        self.world.calls.append(("trt", "create_execution_context", (runtime_config,)))
        self.world.context = FakeExecutionContext(self.world, runtime_config)
        return self.world.context


class FakeRuntime:
    def __init__(self, logger) -> None:
        self.logger = logger
        self.world: FakeWorld = FakeWorld.current
        self._dla_core = -1

    @property
    def DLA_core(self):
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, core):
        self.world.calls.append(("trt", "DLA_core", (core,)))
        self._dla_core = core

    def deserialize_cuda_engine(self, serialized_engine):
        self.world.calls.append(("trt", "deserialize_cuda_engine", (len(serialized_engine),)))
        return FakeCudaEngine(self.world) if bytes(serialized_engine) == ENGINE_BYTES else None


class FakeWorld:
    """One fake GPU + TensorRT flavour, and the log of every call made on them, in order."""

    current: "FakeWorld"

    def __init__(self, flavour: str = "tensorrt_rtx", fail: Optional[Dict[str, Any]] = None, devices: int = 1,
                 integrated: bool = False) -> None:
        self.calls: List[Tuple[str, str, tuple]] = []
        self.cudart = FakeCudart(self.calls, fail, devices, integrated)
        self.context: Optional[FakeExecutionContext] = None
        trt = types.ModuleType(flavour)
        trt.__version__ = FAKE_VERSIONS[flavour]
        trt.Logger = tensorrt_rtx.Logger
        trt.Runtime = FakeRuntime
        trt.init_libnvinfer_plugins = lambda logger, namespace: self.calls.append(
            ("module", "init_libnvinfer_plugins", (namespace,))) or True
        trt.TensorIOMode = tensorrt_rtx.TensorIOMode
        trt.DataType = tensorrt_rtx.DataType
        if flavour == "tensorrt_rtx":
            trt.CudaGraphStrategy = tensorrt_rtx.CudaGraphStrategy
        self.trt = trt
        FakeWorld.current = self

    def names(self, api: Optional[str] = None) -> List[str]:
        return [name for kind, name, _ in self.calls if api is None or kind == api]

    def since(self, mark: int) -> List[Tuple[str, str, tuple]]:
        return self.calls[mark:]


# -- fixtures -----------------------------------------------------------------------------------
def write_engine(folder: str, name: str = "model.engine", flavour: str = "tensorrt_rtx",
                 version: Optional[str] = None, cc: str = "8.7") -> str:
    """A fake plan with a real ``engine`` manifest (8x8 input, 5 labels), and an ONNX file beside it.

    The manifest's build record is what engines.compat reads: TensorRT flavour and version, and the
    GPU it was built for (ahead-of-time compute capabilities for TensorRT-RTX, the builder's for TensorRT).
    """
    device = ({"aot_compute_capabilities": [cc, "8.6"]} if flavour == "tensorrt_rtx"
              else {"compute_capability": cc, "hardware_compatibility": "none", "builder_device": "Orin"})
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(ENGINE_BYTES)
    onnx_path = os.path.join(folder, "model.onnx")
    with open(onnx_path, "wb") as f:
        f.write(b"onnx")
    pre = Preprocessing(input_size=(H, W), crop_pct=1.0, interpolation="bilinear")
    labels = ["n%08d" % i for i in range(CLASSES)]
    m = mf.Manifest(kind="engine", artifact={},
                    model=mf.ModelRecord(name="fake", architecture="linear", source="test", weights_sha256="0" * 64,
                                         num_classes=CLASSES, label_names=labels,
                                         label_descriptions={l: "thing %d, other name" % i for i, l in enumerate(labels)}),
                    preprocessing=pre.to_dict(),
                    io={"input": {"name": "input", "shape": ["batch", 3, H, W], "dtype": "float32"},
                        "output": {"name": "logits", "shape": ["batch", CLASSES], "dtype": "float32"}},
                    stage={"summary": "fake engine", "precision": "fp32", "target": "fake",
                           "tensorrt": {"flavour": flavour, "version": version or FAKE_VERSIONS[flavour]},
                           "device": device},
                    parent={"file": onnx_path, "sha256": mf.file_sha256(onnx_path), "kind": "onnx"})
    mf.write(m, path)
    return path


@pytest.fixture
def engine(tmp_path) -> str:
    """A fake engine built (says its manifest) by TensorRT-RTX 1.7 for compute capability 8.7 / 8.6."""
    return write_engine(str(tmp_path))


@pytest.fixture
def trt_engine(tmp_path) -> str:
    """A fake engine built (says its manifest) by TensorRT 10.3 on an Orin (8.7)."""
    return write_engine(str(tmp_path), flavour="tensorrt")


def install(monkeypatch, world: FakeWorld) -> None:
    """Route the runner's TensorRT import, compatibility check and CUDA calls to ``world``."""
    def load(flavour=None):   # the runner asks for the flavour its manifest names, and only that one
        world.calls.append(("load", "load_tensorrt", (flavour,)))
        if flavour not in (None, world.trt.__name__):
            raise ImportError("No module named %r" % flavour)
        return from_module(world.trt)
    monkeypatch.setattr(trt_backend, "load_tensorrt", load)
    real_check = trt_backend.check_compat

    def check(manifest, api, device):   # the real engines.compat check, recorded
        world.calls.append(("compat", "check_engine_compat", (manifest.kind, api.flavour, device.cc, device.name)))
        real_check(manifest, api, device)
    monkeypatch.setattr(trt_backend, "check_compat", check)


def backend(world: FakeWorld, engine_path: str, **kwargs: Any) -> trt_backend.TensorRTBackend:
    return trt_backend.TensorRTBackend(engine_path, cuda_api=CudaRuntimeApi(world.cudart), **kwargs)


def batch_of(n: int) -> np.ndarray:
    return RNG.standard_normal((n, 3, H, W)).astype(np.float32)


def in_order(names: List[str], expected: List[str]) -> bool:
    """``expected`` appears in ``names`` as a subsequence (same order, gaps allowed)."""
    it = iter(names)
    return all(any(n == e for n in it) for e in expected)


# -- the fakes follow the real APIs -------------------------------------------------------------
def _doc_params(doc: str, name: str) -> List[Tuple[str, ...]]:
    """Parameter names of every ``name(...)`` signature in a pybind / cython docstring."""
    out = []
    for args in re.findall(r"\b%s\(([^)]*)\)" % re.escape(name), doc or ""):
        params = []
        for piece in args.split(","):
            piece = piece.split(":")[0].split("=")[0].strip()
            if piece:
                params.append(piece.split()[-1])
        out.append(tuple(p for p in params if p != "self"))
    return out


def _fake_params(fn: Any) -> Tuple[str, ...]:
    return tuple(p for p in inspect.signature(fn).parameters if p != "self")


@pytest.mark.parametrize("fake, real", [
    (FakeExecutionContext, tensorrt_rtx.IExecutionContext),
    (FakeCudaEngine, tensorrt_rtx.ICudaEngine),
    (FakeRuntime, tensorrt_rtx.Runtime),
    (FakeRuntimeConfig, tensorrt_rtx.IRuntimeConfig),
])
def test_fakes_are_shaped_by_the_real_tensorrt_rtx(fake, real):
    public = [n for n, v in vars(fake).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))]
    assert public or fake is FakeRuntimeConfig
    for name in public:
        assert hasattr(real, name), f"{real.__name__} has no {name}"
        member = getattr(real, name)
        if callable(member) and not isinstance(vars(fake)[name], property):
            sigs = _doc_params(member.__doc__, name)
            assert _fake_params(getattr(fake, name)) in sigs, (name, sigs)
    assert hasattr(real, "cuda_graph_strategy") or fake is not FakeRuntimeConfig
    assert _doc_params(tensorrt_rtx.Runtime.__init__.__doc__, "__init__") == [("logger",)]


def test_fake_cudart_is_shaped_by_cuda_bindings_runtime():
    public = [n for n, v in vars(FakeCudart).items() if n.startswith("cuda") and inspect.isfunction(v)]
    assert len(public) >= 20
    for name in ("cudaError_t", "cudaMemcpyKind", "cudaStreamCaptureMode", "cudaStreamNonBlocking", "cudaHostAllocMapped"):
        assert getattr(FakeCudart, name) is getattr(real_cudart, name)      # the real enums and constants
    for name in public:
        real = getattr(real_cudart, name)
        assert _fake_params(getattr(FakeCudart, name)) in _doc_params(real.__doc__, name), name
    # and the real module really reports a missing driver as an error code, which the runner checks
    err = real_cudart.cudaGetDeviceCount()[0]
    assert err in (OK, real_cudart.cudaError_t.cudaErrorInsufficientDriver, real_cudart.cudaError_t.cudaErrorNoDevice)


def _surface(path: str) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("flavour", ["tensorrt", "tensorrt_rtx"])
def test_every_tensorrt_name_the_runner_calls_exists_in_each_generation(monkeypatch, tmp_path, flavour):
    engine = write_engine(str(tmp_path), flavour=flavour)
    """Record a full cycle (both graph modes), then look each called method up in the real API snapshots."""
    used = set()
    for graph in (False, True):
        world = FakeWorld(flavour)
        install(monkeypatch, world)
        with backend(world, engine, cuda_graph=graph) as b:
            b.infer(batch_of(2))
            b.infer(batch_of(3))
        owners = {"set_input_shape": "IExecutionContext", "get_tensor_shape": "IExecutionContext",
                  "set_tensor_address": "IExecutionContext", "execute_async_v3": "IExecutionContext",
                  "deserialize_cuda_engine": "Runtime", "create_execution_context": "ICudaEngine",
                  "create_runtime_config": "ICudaEngine", "DLA_core": "Runtime"}
        used |= {(owners[name], name) for name in world.names("trt")}
    # engine getters are called on the ICudaEngine directly, not recorded: list them too
    used |= {("ICudaEngine", n) for n in ("num_io_tensors", "get_tensor_name", "get_tensor_mode",
                                          "get_tensor_dtype", "get_tensor_shape", "get_tensor_profile_shape")}
    files = sorted(f for f in os.listdir(SNAPSHOTS) if f.endswith(".json"))
    targets = [f for f in files if f.startswith("tensorrt_rtx")] if flavour == "tensorrt_rtx" else \
        [f for f in files if f.startswith("tensorrt-")]
    assert targets, f"no API snapshots for {flavour} in {SNAPSHOTS}"
    for f in targets:
        classes = _surface(os.path.join(SNAPSHOTS, f))["classes"]
        missing = sorted("%s.%s" % (c, m) for c, m in used if m not in classes.get(c, []))
        assert not missing, f"{f}: {missing}"
    if flavour == "tensorrt":
        assert ("ICudaEngine", "create_runtime_config") not in used   # 8.x has none: graphs are captured by hand


# -- call order ---------------------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["tensorrt", "tensorrt_rtx"])
def test_activation_binds_every_tensor_by_name_once_with_max_batch_buffers(monkeypatch, tmp_path, flavour):
    engine = write_engine(str(tmp_path), flavour=flavour)
    world = FakeWorld(flavour)
    install(monkeypatch, world)
    b = backend(world, engine)
    assert world.calls == []                       # construction touches nothing
    b.activate()
    names = world.names()
    assert in_order(names, ["cudaGetDeviceCount", "cudaSetDevice", "cudaGetDeviceProperties", "check_engine_compat",
                            "deserialize_cuda_engine", "create_execution_context", "cudaStreamCreateWithFlags",
                            "set_input_shape", "cudaMallocHost", "cudaMalloc", "set_tensor_address",
                            "cudaMallocHost", "cudaMalloc", "set_tensor_address"])
    compat = [c for c in world.calls if c[1] == "check_engine_compat"][0]
    assert compat[2] == ("engine", flavour, "8.7", "NVIDIA Fake Orin")
    assert names.index("check_engine_compat") < names.index("deserialize_cuda_engine")
    bound = {c[2][0]: c[2][1] for c in world.calls if c[1] == "set_tensor_address"}
    assert set(bound) == set(IO)                  # every I/O tensor, by name
    assert [c[2] for c in world.calls if c[1] == "set_input_shape"] == [("input", (MAX_BATCH, 3, H, W))]
    sizes = sorted(c[2][0] for c in world.calls if c[1] == "cudaMallocHost")
    assert sizes == sorted([MAX_BATCH * CLASSES * 4, MAX_BATCH * 3 * H * W * 4])
    assert (b.name, b.max_batch, b.input_name, b.output_name, b.input_shape, b.num_classes) == (
        "tensorrt-rtx" if flavour == "tensorrt_rtx" else "tensorrt", MAX_BATCH, "input", "logits", (3, H, W), CLASSES)
    assert b.describe() == {"name": b.name, "tensorrt": FAKE_VERSIONS[flavour], "cuda_api": "cuda-python",
                            "gpu": "NVIDIA Fake Orin", "compute_capability": "8.7", "cuda_graph": "off",
                            "max_batch": MAX_BATCH, "engine": "model.engine", "zero_copy": False, "dla_core": -1}
    b.close()


@pytest.mark.parametrize("flavour", ["tensorrt", "tensorrt_rtx"])
def test_infer_order_and_results_and_no_allocation_per_call(monkeypatch, tmp_path, flavour):
    engine = write_engine(str(tmp_path), flavour=flavour)
    world = FakeWorld(flavour)
    install(monkeypatch, world)
    with backend(world, engine) as b:
        for n, expect_shape_call in ((3, True), (3, False), (MAX_BATCH, True), (1, True)):
            mark = len(world.calls)
            x = batch_of(n)
            y = b.infer(x)
            np.testing.assert_allclose(y, reference_logits(x), rtol=1e-5, atol=1e-5)
            assert y.shape == (n, CLASSES) and y.dtype == np.float32
            calls = world.since(mark)
            names = [c[1] for c in calls]
            expected = (["set_input_shape"] if expect_shape_call else []) + [
                "cudaMemcpyAsync", "cudaEventRecord", "execute_async_v3", "cudaEventRecord", "cudaMemcpyAsync",
                "cudaStreamSynchronize", "cudaEventElapsedTime"]
            assert in_order(names, expected), names
            assert ("set_input_shape" in names) == expect_shape_call
            if expect_shape_call:
                assert calls[names.index("set_input_shape")][2] == ("input", (n, 3, H, W))
            copies = [c[2] for c in calls if c[1] == "cudaMemcpyAsync"]
            assert [c[2] for c in copies] == [n * 3 * H * W * 4, n * CLASSES * 4]   # only the n images, both ways
            assert copies[0][3] == real_cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
            assert copies[1][3] == real_cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
            assert not {"cudaMallocHost", "cudaMalloc", "set_tensor_address", "cudaFree"} & set(names)
            assert b.last_gpu_ms == 1.25
        assert y.base is None or not np.shares_memory(y, b._output.host)   # the caller owns the result


def test_bad_batches_raise_value_error_and_the_runner_stays_usable(monkeypatch, engine):
    world = FakeWorld()
    install(monkeypatch, world)
    with backend(world, engine) as b:
        for bad, needle in ((batch_of(MAX_BATCH + 1), "max batch"), (batch_of(2).astype(np.float64), "float32"),
                            (np.zeros((2, 3, H + 1, W), np.float32), "shape"), (np.zeros((0, 3, H, W), np.float32), "empty")):
            with pytest.raises(ValueError, match=needle):
                b.infer(bad)
        x = batch_of(2)
        np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)


def test_close_frees_everything_it_allocated_and_can_reactivate(monkeypatch, engine):
    world = FakeWorld()
    install(monkeypatch, world)
    b = backend(world, engine)
    with b:
        b.infer(batch_of(2))
    names = world.names()
    assert names.count("cudaMallocHost") == names.count("cudaFreeHost") == 2
    assert names.count("cudaMalloc") == names.count("cudaFree") == 2
    assert world.cudart.pinned == {} and world.cudart.device_mem == {}
    assert world.cudart.live == {"streams": 0, "events": 0, "graph_execs": 0, "graphs": 0}
    b.close()                                          # idempotent
    assert world.names().count("cudaFree") == 2
    x = batch_of(4)
    np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)   # re-activates
    b.close()


# -- CUDA graphs --------------------------------------------------------------------------------
def test_cuda_graph_with_tensorrt_captures_once_per_batch_size_and_replays(monkeypatch, trt_engine):
    engine = trt_engine
    world = FakeWorld("tensorrt")
    install(monkeypatch, world)
    with backend(world, engine, cuda_graph=True) as b:
        mark = len(world.calls)
        x = batch_of(3)
        np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
        first = [c[1] for c in world.since(mark)]
        assert in_order(first, ["set_input_shape", "cudaMemcpyAsync", "cudaEventRecord",
                                "execute_async_v3",                       # the ordinary run TensorRT wants first
                                "cudaStreamBeginCapture", "execute_async_v3", "cudaStreamEndCapture",
                                "cudaGraphInstantiateWithFlags", "cudaGraphDestroy", "cudaGraphLaunch",
                                "cudaEventRecord", "cudaMemcpyAsync", "cudaStreamSynchronize"]), first
        mode = [c[2][1] for c in world.calls if c[1] == "cudaStreamBeginCapture"][0]
        assert mode == real_cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal

        mark = len(world.calls)
        x = batch_of(3)                                 # new data, same size: replay only
        np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
        again = [c[1] for c in world.since(mark)]
        assert in_order(again, ["cudaMemcpyAsync", "cudaEventRecord", "cudaGraphLaunch", "cudaEventRecord",
                                "cudaMemcpyAsync", "cudaStreamSynchronize"]), again
        assert "execute_async_v3" not in again and "cudaStreamBeginCapture" not in again

        x = batch_of(5)                                 # another size: its own graph
        np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
        assert world.names().count("cudaStreamBeginCapture") == 2
        assert world.cudart.live["graph_execs"] == 2 and world.cudart.live["graphs"] == 0
    assert world.names().count("cudaGraphExecDestroy") == 2 and world.cudart.live["graph_execs"] == 0


def test_cuda_graph_with_tensorrt_rtx_uses_its_built_in_capture(monkeypatch, engine):
    world = FakeWorld("tensorrt_rtx")
    install(monkeypatch, world)
    with backend(world, engine, cuda_graph=True) as b:
        x = batch_of(2)
        np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
        config = world.context.runtime_config
        assert config is not None and config.cuda_graph_strategy == tensorrt_rtx.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    names = world.names()
    assert in_order(names, ["create_runtime_config", "create_execution_context", "execute_async_v3"])
    assert "cudaStreamBeginCapture" not in names


# -- errors ---------------------------------------------------------------------------------------
def test_a_failing_cuda_call_raises_with_its_name_and_frees_what_was_allocated(monkeypatch, engine):
    world = FakeWorld(fail={"cudaMalloc": (real_cudart.cudaError_t.cudaErrorMemoryAllocation, 2)})
    install(monkeypatch, world)
    b = backend(world, engine)
    with pytest.raises(CudaError, match=r"cudaMalloc failed: cudaErrorMemoryAllocation"):
        b.activate()
    assert not b.active
    assert world.cudart.pinned == {} and world.cudart.device_mem == {}
    assert world.cudart.live["streams"] == 0 and world.cudart.live["events"] == 0


def test_a_failing_sync_is_reported_not_ignored(monkeypatch, engine):
    world = FakeWorld(fail={"cudaStreamSynchronize": real_cudart.cudaError_t.cudaErrorLaunchFailure})
    install(monkeypatch, world)
    with backend(world, engine) as b:
        with pytest.raises(CudaError, match="cudaStreamSynchronize failed: cudaErrorLaunchFailure"):
            b.infer(batch_of(1))


def test_no_driver_is_unsupported_and_names_the_onnx_alternative(monkeypatch, engine):
    world = FakeWorld(fail={"cudaGetDeviceCount": real_cudart.cudaError_t.cudaErrorInsufficientDriver})
    install(monkeypatch, world)
    with pytest.raises(Unsupported) as e:
        backend(world, engine).activate()
    msg = str(e.value)
    assert "cudaErrorInsufficientDriver" in msg and "model.onnx" in msg and "ONNX Runtime" in msg
    assert "deserialize_cuda_engine" not in world.names()


def test_no_gpu_is_unsupported(monkeypatch, engine):
    world = FakeWorld(devices=0)
    install(monkeypatch, world)
    with pytest.raises(Unsupported, match="device 0 not found"):
        backend(world, engine).activate()


def test_missing_tensorrt_is_unsupported_and_names_the_onnx_alternative(monkeypatch, engine):
    def no_trt(flavour=None):
        raise ImportError("No module named 'tensorrt'")
    monkeypatch.setattr(trt_backend, "load_tensorrt", no_trt)
    with pytest.raises(Unsupported, match=r"TensorRT is not installed.*model\.onnx.*ONNX Runtime"):
        trt_backend.TensorRTBackend(engine).activate()


def test_a_plan_tensorrt_cannot_deserialize_is_a_user_error(monkeypatch, tmp_path):
    path = write_engine(str(tmp_path))
    with open(path, "wb") as f:
        f.write(b"not a plan")
    m = mf.read(path, verify=False)
    mf.write(m, path)                                   # manifest matches the (bad) bytes
    world = FakeWorld()
    install(monkeypatch, world)
    with pytest.raises(UserError, match="could not deserialize"):
        backend(world, path).activate()
    assert world.cudart.live["streams"] == 0


@pytest.mark.parametrize("kw, needle", [
    ({"flavour": "tensorrt", "version": "8.6.2"}, "built with tensorrt 8.6.2 but this is TensorRT 10.3.0.30"),
    ({"flavour": "tensorrt", "cc": "8.6"}, "cannot run on NVIDIA Fake Orin"),
])
def test_an_engine_for_another_tensorrt_or_gpu_is_refused_before_deserializing(monkeypatch, tmp_path, kw, needle):
    """engines.compat.check_engine_compat (the real one) runs on the manifest before the plan is touched."""
    path = write_engine(str(tmp_path), **kw)
    world = FakeWorld("tensorrt")
    install(monkeypatch, world)
    b = backend(world, path)
    with pytest.raises(UserError, match=needle):
        b.activate()
    assert "deserialize_cuda_engine" not in world.names() and not b.active


def test_an_engine_without_manifest_is_refused_before_anything_loads(monkeypatch, tmp_path):
    path = os.path.join(str(tmp_path), "model.engine")
    with open(path, "wb") as f:
        f.write(ENGINE_BYTES)
    world = FakeWorld()
    install(monkeypatch, world)
    with pytest.raises(UserError, match="no manifest beside"):
        backend(world, path).activate()
    assert world.calls == []


def test_on_this_host_an_engine_is_unsupported_never_a_silent_switch(engine):
    """The real imports here: no TensorRT runtime GPU path (TensorRT-RTX without a driver, or no TensorRT)."""
    with pytest.raises(Unsupported) as e:
        trt_backend.TensorRTBackend(engine).activate()
    assert "model.onnx" in str(e.value) and "ONNX Runtime" in str(e.value)


# -- pycuda (NVIDIA's samples' choice; not installable here) --------------------------------------
class FakePycudaDriver:
    """``pycuda.driver`` stand-in with the names pycuda's wrap_cudadrv.cpp exports, on the same fake GPU."""

    class Error(Exception):
        pass

    def __init__(self, world: FakeWorld) -> None:
        self.world = world
        self.stack: List[str] = []
        rt = world.cudart
        drv = self

        class Device:
            @staticmethod
            def count():
                return rt.devices

            def __init__(self, index):
                self.index = index

            def retain_primary_context(self):
                return Context()

            def compute_capability(self):
                return (8, 7)

            def name(self):
                return "NVIDIA Fake Orin"

        class Context:
            def push(self):
                drv.stack.append("ctx")

            @staticmethod
            def pop():
                drv.stack.pop()

        class Stream:
            def __init__(self, flags=0):
                self._s = rt.cudaStreamCreateWithFlags(flags)[1]
                self.handle = int(self._s)

            def synchronize(self):
                rt.cudaStreamSynchronize(self._s)

        class Event:
            def __init__(self, flags=0):
                self._e = rt.cudaEventCreate()[1]

            def record(self, stream=None):
                rt.cudaEventRecord(self._e, stream._s)

            def synchronize(self):
                rt.cudaEventSynchronize(self._e)

            def time_since(self, event):
                return rt.cudaEventElapsedTime(event._e, self._e)[1]

        class Allocation:
            def __init__(self, nbytes):
                self.address = rt.cudaMalloc(nbytes)[1]

            def __int__(self):
                return self.address

            def free(self):
                rt.cudaFree(self.address)

        self.Device, self.Context, self.Stream, self.Event, self._Allocation = Device, Context, Stream, Event, Allocation

    def init(self, flags=0):
        pass

    def pagelocked_empty(self, shape, dtype, order="C", mem_flags=0):
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        pointer = self.world.cudart.cudaMallocHost(nbytes)[1]
        return np.frombuffer((ctypes.c_char * nbytes).from_address(pointer), dtype=dtype).reshape(shape)

    def mem_alloc(self, nbytes):
        return self._Allocation(nbytes)

    def memcpy_htod_async(self, dest, src, stream=None):
        err = self.world.cudart.cudaMemcpyAsync(int(dest), src.ctypes.data, src.nbytes,
                                                real_cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream._s)[0]
        if err != OK:
            raise self.Error("cuMemcpyHtoDAsync failed: invalid argument")

    def memcpy_dtoh_async(self, dest, src, stream=None):
        err = self.world.cudart.cudaMemcpyAsync(dest.ctypes.data, int(src), dest.nbytes,
                                                real_cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream._s)[0]
        if err != OK:
            raise self.Error("cuMemcpyDtoHAsync failed: invalid argument")


def test_pycuda_path_moves_the_same_bytes_and_balances_context_push_pop(monkeypatch, trt_engine):
    engine = trt_engine
    world = FakeWorld("tensorrt")
    install(monkeypatch, world)
    driver = FakePycudaDriver(world)
    with trt_backend.TensorRTBackend(engine, cuda_api=PycudaApi(driver)) as b:
        for n in (2, 2, 6):
            x = batch_of(n)
            np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
            assert driver.stack == []                   # every push popped, also across calls
    assert world.cudart.device_mem == {}


# -- the Classifier on the TensorRT path ------------------------------------------------------------
def test_classifier_on_an_engine_uses_the_same_runner_and_preprocessing(monkeypatch, engine):
    from inception_deploy.runtime import Classifier

    world = FakeWorld()
    install(monkeypatch, world)
    monkeypatch.setattr(trt_backend, "load_cuda_api", lambda prefer=None: CudaRuntimeApi(world.cudart))
    frame = RNG.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    with Classifier.load(engine) as clf:
        assert clf.backend.name == "tensorrt-rtx" and clf.max_batch == MAX_BATCH
        got = clf.classify(frame, top_k=CLASSES)
        with pytest.raises(ValueError, match="HxWx3"):
            clf.classify(frame[:, :, 0])
        assert clf.classify(frame, top_k=CLASSES) == got             # still usable after a bad frame
    logits = reference_logits(clf.preprocessing.frame(frame)[None])[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert [g.label_id for g in got] == list(np.argsort(-p))
    np.testing.assert_allclose([g.probability for g in got], np.sort(p)[::-1], rtol=1e-4)
    assert got[0].label_name == "thing %d" % got[0].label_id
    assert world.cudart.pinned == {}


# -- issue 22: flavour from the manifest, one engine per process, plugins, DLA core, zero-copy, CUDA 11 ----
def test_the_flavour_comes_from_the_engine_manifest(monkeypatch, engine):
    """A TensorRT-RTX plan asks for tensorrt_rtx only: with plain TensorRT installed (first in the old
    import order) it is refused by name instead of being fed to the wrong runtime."""
    world = FakeWorld("tensorrt")                       # the host's TensorRT; the engine says tensorrt_rtx
    install(monkeypatch, world)
    with pytest.raises(Unsupported, match="tensorrt_rtx"):
        backend(world, engine).activate()
    assert ("load", "load_tensorrt", ("tensorrt_rtx",)) in world.calls and "deserialize_cuda_engine" not in world.names()
    # the real import: this host has tensorrt_rtx but no tensorrt, and a plain-TensorRT plan never gets tensorrt_rtx
    from inception_deploy.engines.trt_api import import_tensorrt
    with pytest.raises(Unsupported, match="tensorrt"):
        import_tensorrt(prefer="tensorrt", only=True)
    assert import_tensorrt(prefer="tensorrt_rtx", only=True).flavour == "tensorrt_rtx"


def test_threads_share_one_deserialized_engine_with_a_context_each(monkeypatch, trt_engine):
    import threading

    from inception_deploy.runtime import Classifier
    from inception_deploy.runtime.backends import trt_shared

    world = FakeWorld("tensorrt")
    install(monkeypatch, world)
    monkeypatch.setattr(trt_backend, "load_cuda_api", lambda prefer=None: CudaRuntimeApi(world.cudart))
    monkeypatch.setattr(trt_shared, "_PLUGINS", set())
    frames = [RNG.integers(0, 256, size=(20, 30, 3), dtype=np.uint8) for _ in range(4)]
    results: Dict[int, Any] = {}
    with Classifier.load(trt_engine) as clf:
        def work(i: int) -> None:
            results[i] = clf.classify(frames[i], top_k=1)[0].label_id
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert trt_shared.live() == 1
    names = world.names()
    assert names.count("deserialize_cuda_engine") == 1          # the weights exist once
    assert names.count("create_execution_context") == 5         # the loading thread + 4 workers
    assert names.count("init_libnvinfer_plugins") == 1          # before the first deserialize
    assert names.index("init_libnvinfer_plugins") < names.index("deserialize_cuda_engine")
    expected = [int(np.argmax(reference_logits(clf.preprocessing.frame(f)[None])[0])) for f in frames]
    assert [results[i] for i in range(4)] == expected
    assert trt_shared.live() == 0 and world.cudart.device_mem == {}


def _dla_engine(tmp_path, core: int) -> str:
    path = write_engine(str(tmp_path), flavour="tensorrt")
    m = mf.read(path)
    m.stage["dla"] = {"core": core, "gpu_fallback": True}
    mf.write(m, path)
    return path


def test_a_dla_engine_runs_on_the_core_the_app_chooses(monkeypatch, tmp_path):
    path = _dla_engine(tmp_path, 0)
    world = FakeWorld("tensorrt")
    install(monkeypatch, world)
    with backend(world, path) as b:                      # default: the core it was built for
        assert b.describe()["dla_core"] == 0
    assert ("trt", "DLA_core", (0,)) in world.calls
    with backend(world, path, dla_core=1) as b:          # the app's choice (an engine runs on any core)
        x = batch_of(2)
        np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
    assert ("trt", "DLA_core", (1,)) in world.calls
    calls = world.calls
    assert calls.index(("trt", "DLA_core", (1,))) < [i for i, c in enumerate(calls) if c[1] == "deserialize_cuda_engine"][-1]
    with pytest.raises(UserError, match="built for DLA core 0, so it cannot run on the GPU"):
        backend(world, path, dla_core=-1).activate()


def test_a_gpu_engine_refuses_a_dla_core(monkeypatch, trt_engine):
    world = FakeWorld("tensorrt")
    install(monkeypatch, world)
    with pytest.raises(UserError, match="built for the GPU, so it cannot run on DLA core 0"):
        backend(world, trt_engine, dla_core=0).activate()
    assert "deserialize_cuda_engine" not in world.names()


def test_zero_copy_on_an_integrated_gpu_binds_mapped_memory_and_copies_nothing(monkeypatch, trt_engine):
    world = FakeWorld("tensorrt", integrated=True)       # a Jetson: the GPU shares DRAM and maps host memory
    install(monkeypatch, world)
    with backend(world, trt_engine) as b:
        assert b.describe()["zero_copy"] is True
        for n in (3, 1, MAX_BATCH):
            x = batch_of(n)
            np.testing.assert_allclose(b.infer(x), reference_logits(x), rtol=1e-5, atol=1e-5)
    names = world.names()
    assert names.count("cudaHostAlloc") == 2 and names.count("cudaHostGetDevicePointer") == 2
    assert "cudaMemcpyAsync" not in names and "cudaMalloc" not in names and "cudaMallocHost" not in names
    assert world.cudart.pinned == {}
    flags = [c[2][1] for c in world.calls if c[1] == "cudaHostAlloc"]
    assert flags == [real_cudart.cudaHostAllocMapped] * 2
    # a discrete GPU keeps the copies; zero_copy=False forces them on a Jetson too
    world2 = FakeWorld("tensorrt", integrated=True)
    install(monkeypatch, world2)
    with backend(world2, trt_engine, zero_copy=False) as b:
        b.infer(batch_of(2))
    assert "cudaHostAlloc" not in world2.names() and "cudaMemcpyAsync" in world2.names()


def test_every_cuda_call_of_the_runner_exists_alike_in_cuda_python_11_8_and_the_installed_one():
    """JetPack 5 has CUDA 11.4, so cuda-python 11.8: each cudart call the runner makes must have the same
    parameters there as in the installed cuda-python (13.x). cudaGraphInstantiate does not (11.x: graph,
    log buffer, size; 12+: graph, flags), which is why the runner calls cudaGraphInstantiateWithFlags."""
    src = inspect.getsource(CudaRuntimeApi)
    called = sorted(set(re.findall(r'_call\("(cuda\w+)"', src)))
    assert "cudaGraphInstantiateWithFlags" in called and "cudaGraphInstantiate" not in called
    with open(os.path.join(os.path.dirname(__file__), "data", "cuda_api", "cuda-bindings-11.8.7.json")) as f:
        old = json.load(f)
    for name in called:
        live = _doc_params(getattr(real_cudart, name).__doc__, name)
        snap = _doc_params(old["functions"][name], name)
        assert snap and snap[0] in live, (name, snap, live)
    assert _doc_params(old["functions"]["cudaGraphInstantiate"], "cudaGraphInstantiate") != \
        _doc_params(real_cudart.cudaGraphInstantiate.__doc__, "cudaGraphInstantiate")
    assert "cudaHostAllocMapped" in old["constants"] and {"integrated", "canMapHostMemory"} <= set(old["device_prop_fields"])
