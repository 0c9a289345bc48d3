"""TensorRT engine runner: the one implementation the camera runtime and the benchmarks share.

It follows NVIDIA's Python samples (``samples/python/common_runtime.py``): deserialize the plan,
one execution context, page-locked host buffers and device buffers for every I/O tensor, one
non-blocking stream; per call: copy the batch into the pinned input, ``set_input_shape`` for the
dynamic batch, async host->device copy, ``execute_async_v3``, async device->host copies, stream
synchronize. Differences from the sample, on purpose:

- buffers are allocated ONCE, for the engine profile's max batch, and bound with
  ``set_tensor_address`` by tensor name at activation; a call only slices them (no allocation, no
  re-binding per frame);
- every CUDA call's result is checked (:mod:`runtime.backends.cudamem`), and so are the boolean
  results of ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``;
- optional CUDA graphs: TensorRT-RTX captures natively (``IRuntimeConfig.cuda_graph_strategy``);
  with TensorRT the runner captures ``execute_async_v3`` once per batch size (after one ordinary
  run, as TensorRT requires) and replays it with ``cudaGraphLaunch``;
- ``last_gpu_ms`` is the engine's GPU time from CUDA events around the execution (copies excluded;
  callers time end to end themselves).

Works with ``tensorrt`` 8.6 / 10.x / 11.x and ``tensorrt_rtx`` (imported through
:func:`engines.trt_api.import_tensorrt`); the engine's manifest is checked against the runtime and
the GPU (:func:`engines.compat.check_engine_compat`) BEFORE deserializing, so a wrong plan fails with
a sentence instead of a crash. Where TensorRT, a CUDA API (pycuda / cuda-python), a driver or a GPU
is missing, :class:`pipeline.errors.Unsupported` names what is missing and the ONNX alternative;
nothing switches silently to ONNX Runtime.

NOT EXECUTED on the development/CI machines (no GPU, no driver, no TensorRT runtime there): the call
sequence is tested against a recording fake shaped by ``tensorrt_rtx`` and ``cuda.bindings.runtime``
(tests/test_runtime_tensorrt.py). Device-side: numpy only, Python 3.8.
"""
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.runtime.backends.base import Backend
from inception_deploy.runtime.backends import trt_shared
from inception_deploy.runtime.backends.cudamem import CudaApi, CudaError, DeviceInfo, load_cuda_api



@dataclass
class IOTensor:
    """One engine I/O tensor and its preallocated buffers (max-batch sized)."""

    name: str
    is_input: bool
    dtype: np.dtype
    max_shape: Tuple[int, ...]
    host: np.ndarray          # page-locked, shape ``max_shape``
    device: int               # device address
    mapped: bool = False      # zero-copy: ``host`` is mapped into the GPU at ``device`` (no copies)


# TensorRT DataType member name -> numpy (what ``trt.nptype`` maps; by name, so it holds for every
# generation, including bindings whose Python helpers differ). BF16/FP8/FP4/INT4 have no numpy type.
_NUMPY_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
                "BOOL": np.bool_, "UINT8": np.uint8}


def numpy_dtype(trt_dtype: Any) -> Optional[np.dtype]:
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    found = _NUMPY_TYPES.get(str(name))
    return np.dtype(found) if found is not None else None


def load_tensorrt(flavour: Optional[str] = None) -> Any:
    """``engines.trt_api.import_tensorrt``: the TensorRT flavour that wrote the plan (``tensorrt`` or
    ``tensorrt_rtx``, from its manifest), and only that one: a host may have both installed."""
    from inception_deploy.engines.trt_api import import_tensorrt
    return import_tensorrt(prefer=flavour, only=flavour is not None)


def check_compat(manifest: mf.Manifest, api: Any, device: DeviceInfo) -> None:
    """``engines.compat.check_engine_compat``: refuses a plan built for another runtime or GPU."""
    from inception_deploy.engines.compat import check_engine_compat
    check_engine_compat(manifest, api, device.compute_capability, device.name)


def trt_module(api: Any) -> Any:
    """The TensorRT Python module behind whatever ``import_tensorrt`` returned (module or wrapper)."""
    for attr in ("module", "trt"):
        module = getattr(api, attr, None)
        if module is not None and hasattr(module, "Runtime"):
            return module
    return api


def onnx_alternative(engine_path: str, manifest: Optional[mf.Manifest]) -> str:
    """Where the ONNX model this engine was built from is (for error messages)."""
    found = mf.parent_path(manifest, engine_path) if manifest else None
    return found or str(((manifest.parent if manifest else None) or {}).get("file") or "model.onnx")


class TensorRTBackend(Backend):
    """``TensorRTBackend(engine_path, cuda_graph=False)`` for a ``model.engine`` + ``model.engine.json``.

    ``device``: CUDA device index. ``cuda_api``: ``"pycuda"``, ``"cuda-python"`` or a :class:`CudaApi`
    (default: pycuda where installed, else cuda-python). ``dla_core``: the DLA core a DLA-built engine
    runs on (default: the one it was built for; any core of the device works). ``zero_copy``: bind
    mapped host memory instead of copying (default: on integrated GPUs that can map it, i.e. Jetson).
    Runners of the same plan in one process share one deserialized engine (:mod:`trt_shared`) and
    each has its own execution context, stream and buffers.
    """

    def __init__(self, engine_path: str, cuda_graph: bool = False, device: int = 0,
                 cuda_api: Union[None, str, CudaApi] = None, dla_core: Optional[int] = None,
                 zero_copy: Optional[bool] = None) -> None:
        super().__init__()
        if not os.path.isfile(engine_path):
            raise UserError("engine not found: %s (expected a model.engine written by inception-deploy build)"
                            % engine_path)
        self.engine_path = engine_path
        self.cuda_graph = bool(cuda_graph)
        self.device_index = int(device)
        self._cuda_choice = cuda_api
        self.dla_core = dla_core
        self.zero_copy = zero_copy
        self._shared: Optional[trt_shared.SharedEngine] = None
        self.name = "tensorrt"
        self.manifest: Optional[mf.Manifest] = None
        self.device: Optional[DeviceInfo] = None
        self.trt: Any = None
        self.cuda: Optional[CudaApi] = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._stream_handle = 0
        self._events: List[Any] = []
        self._tensors: List[IOTensor] = []
        self._input: Optional[IOTensor] = None
        self._output: Optional[IOTensor] = None
        self._batch = 0                       # batch size the context's input shape is set to
        self._graphs: Dict[int, Any] = {}     # batch size -> executable CUDA graph (TensorRT path)
        self._native_graphs = False           # TensorRT-RTX captures by itself

    # -- activation --------------------------------------------------------------------------
    def _unsupported(self, what: str) -> Unsupported:
        return Unsupported("cannot run TensorRT engine %s: %s; run the ONNX model it was built from (%s) with "
                           "ONNX Runtime instead (runtime.Classifier.load on the .onnx, or the onnxruntime backend)"
                           % (self.engine_path, what, onnx_alternative(self.engine_path, self.manifest)))

    def _activate(self) -> None:
        self.manifest = mf.read(self.engine_path, expect_kind="engine")
        flavour = (self.manifest.stage.get("tensorrt") or {}).get("flavour")
        try:
            api = load_tensorrt(flavour)
        except (ImportError, Unsupported) as e:
            raise self._unsupported("TensorRT is not installed here (%s)" % str(e).split(";")[0]) from None
        trt = self.trt = trt_module(api)
        try:
            cuda = load_cuda_api(self._cuda_choice) if not isinstance(self._cuda_choice, CudaApi) else self._cuda_choice
            self.device = cuda.open(self.device_index)
        except Unsupported as e:
            raise self._unsupported(str(e)) from None
        self.cuda = cuda
        flavour = getattr(api, "flavour", None) or trt.__name__.split(".")[0]
        self.name = "tensorrt-rtx" if flavour == "tensorrt_rtx" else "tensorrt"
        try:
            check_compat(self.manifest, api, self.device)
            cuda.push()
            try:
                self._load_engine(trt)
                self._allocate()
            finally:
                cuda.pop()
        except BaseException:
            self._close()
            raise

    def _dla(self) -> int:
        """The DLA core to run on: the app's choice, else the one the engine was built for (-1: GPU)."""
        built = int(((self.manifest.stage.get("dla") if self.manifest else None) or {}).get("core", -1))
        if self.dla_core is None:
            return built
        if (built >= 0) != (self.dla_core >= 0):
            raise UserError("%s was built for %s, so it cannot run on %s; build it %s" % (
                self.engine_path, "DLA core %d" % built if built >= 0 else "the GPU",
                "DLA core %d" % self.dla_core if self.dla_core >= 0 else "the GPU",
                "with --dla-core %d" % self.dla_core if self.dla_core >= 0 else "without --dla-core"))
        return int(self.dla_core)

    def _deserialize(self, trt: Any, dla_core: int) -> Any:
        runtime = trt.Runtime(trt_shared.logger_for(trt))
        if dla_core >= 0:
            runtime.DLA_core = dla_core      # a DLA plan runs on whichever core the runtime names
        with open(self.engine_path, "rb") as f:
            engine = runtime.deserialize_cuda_engine(f.read())
        if engine is None:
            raise UserError("%s could not deserialize %s (see its log above): was it built by another TensorRT version "
                            "or for another GPU? rebuild it on or for this device with inception-deploy build"
                            % (self.name, self.engine_path))
        return runtime, engine

    def _load_engine(self, trt: Any) -> None:
        dla_core = self._dla()
        key = (os.path.realpath(self.engine_path), (self.manifest.artifact if self.manifest else {}).get("sha256"),
               self.device_index, dla_core, trt.__name__)
        self._shared = trt_shared.acquire(key, lambda: self._deserialize(trt, dla_core))
        self._runtime, self._engine = self._shared.runtime, self._shared.engine
        if self.cuda_graph and hasattr(trt, "CudaGraphStrategy") and hasattr(self._engine, "create_runtime_config"):
            config = self._engine.create_runtime_config()          # TensorRT-RTX: built-in graph capture
            config.cuda_graph_strategy = trt.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            self._context = self._shared.create_context(config)
            self._native_graphs = True
        else:
            self._context = self._shared.create_context()
        if self._context is None:
            raise CudaError("create_execution_context failed (out of GPU memory?)")
        self._stream = self.cuda.create_stream()
        self._stream_handle = self.cuda.stream_handle(self._stream)
        self._events = [self.cuda.create_event(), self.cuda.create_event()]

    def _allocate(self) -> None:
        """Buffers for the max batch of profile 0, bound to the context by tensor name, once."""
        trt, engine, context = self.trt, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise UserError("%s has inputs %s and outputs %s; expected one image input and a logits output"
                            % (self.engine_path, inputs, outputs))
        in_name = inputs[0]
        shape = tuple(engine.get_tensor_shape(in_name))
        if len(shape) != 4 or any(d < 0 for d in shape[1:]):
            raise UserError("%s input %r has shape %s; expected (N, 3, H, W) with fixed H and W"
                            % (self.engine_path, in_name, shape))
        max_shape = tuple(engine.get_tensor_profile_shape(in_name, 0)[2]) if shape[0] < 0 else shape
        if not context.set_input_shape(in_name, max_shape):
            raise UserError("%s rejects input shape %s for %r" % (self.engine_path, max_shape, in_name))
        self._batch = int(max_shape[0])
        for name in inputs + outputs:
            tensor_shape = max_shape if name == in_name else tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in tensor_shape):
                raise UserError("%s output %r has a data-dependent shape %s; not supported by this runner"
                                % (self.engine_path, name, tensor_shape))
            dtype = numpy_dtype(engine.get_tensor_dtype(name))
            if dtype is None:
                raise UserError("%s tensor %r has type %s, which has no numpy equivalent; build the engine with "
                                "float32 (or float16) I/O" % (self.engine_path, name, engine.get_tensor_dtype(name)))
            if self._use_zero_copy():
                host, address = self.cuda.alloc_mapped(tensor_shape, dtype)
                tensor = IOTensor(name, name == in_name, dtype, tensor_shape, host, address, mapped=True)
                self._tensors.append(tensor)
            else:
                host = self.cuda.alloc_pinned(tensor_shape, dtype)
                tensor = IOTensor(name, name == in_name, dtype, tensor_shape, host, 0)
                self._tensors.append(tensor)
                tensor.device = self.cuda.alloc_device(host.nbytes)
            if not context.set_tensor_address(name, tensor.device):
                raise CudaError("set_tensor_address(%r) failed" % name)
        self._input = self._tensors[0]
        want = (self.manifest.io.get("output") or {}).get("name") if self.manifest else None
        self._output = next((t for t in self._tensors[1:] if t.name == want), self._tensors[1])
        self.input_name, self.output_name = self._input.name, self._output.name
        self.input_shape = tuple(int(d) for d in max_shape[1:])  # type: ignore[assignment]
        self.input_dtype = self._input.dtype     # uint8 for an engine that takes camera frames
        self.max_batch = int(max_shape[0])
        self.num_classes = int(self._output.max_shape[-1]) if len(self._output.max_shape) == 2 else None

    def _use_zero_copy(self) -> bool:
        return bool(self.zero_copy) if self.zero_copy is not None else bool(self.device and self.device.zero_copy)

    def describe(self) -> Dict[str, Any]:
        trt, device = self.trt, self.device
        return {"name": self.name, "tensorrt": getattr(trt, "__version__", None) if trt is not None else None,
                "cuda_api": self.cuda.name if self.cuda is not None else None,
                "gpu": device.name if device else None, "compute_capability": device.cc if device else None,
                "cuda_graph": ("built-in" if self._native_graphs else "captured") if self.cuda_graph else "off",
                "max_batch": self.max_batch, "engine": os.path.basename(self.engine_path),
                "zero_copy": any(t.mapped for t in self._tensors), "dla_core": self._dla() if self.manifest else None}

    # -- inference -----------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        cuda, context, stream = self.cuda, self._context, self._stream
        n = int(batch.shape[0])
        cuda.push()
        try:
            if n != self._batch:
                shape = (n,) + tuple(self.input_shape or ())
                if not context.set_input_shape(self.input_name, shape):
                    raise ValueError("the engine rejects batch shape %s (its profile allows up to %d)"
                                     % (shape, self.max_batch))
                self._batch = n
            host_in = self._input.host[:n]
            np.copyto(host_in, batch, casting="same_kind")   # into the pinned buffer; float16 I/O casts here
            if not self._input.mapped:
                cuda.copy_htod_async(self._input.device, host_in, stream)
            start, end = self._events
            cuda.record_event(start, stream)
            if self.cuda_graph and not self._native_graphs:
                cuda.launch_graph(self._graph_for(n), stream)
            elif not context.execute_async_v3(self._stream_handle):
                raise CudaError("execute_async_v3 failed (see the TensorRT log above)")
            cuda.record_event(end, stream)
            for tensor in self._tensors[1:]:
                if not tensor.mapped:
                    cuda.copy_dtoh_async(tensor.host[:n], tensor.device, stream)
            cuda.synchronize(stream)
            self.last_gpu_ms = cuda.elapsed_ms(start, end)
            return self._output.host[:n].astype(np.float32, copy=True)
        finally:
            cuda.pop()

    def _graph_for(self, n: int) -> Any:
        """The captured ``execute_async_v3`` for batch ``n`` (captured on first use)."""
        graph = self._graphs.get(n)
        if graph is not None:
            return graph
        cuda, context = self.cuda, self._context
        capturable = getattr(context, "is_stream_capturable", None)
        if capturable is not None and not capturable(self._stream_handle):
            raise Unsupported("engine %s cannot be captured into a CUDA graph on this stream; run without cuda_graph"
                              % self.engine_path)
        # One ordinary run first: TensorRT defers some shape-dependent work to the first enqueue.
        if not context.execute_async_v3(self._stream_handle):
            raise CudaError("execute_async_v3 failed before CUDA-graph capture")
        cuda.begin_capture(self._stream)
        try:
            ok = context.execute_async_v3(self._stream_handle)
        finally:
            graph = cuda.end_capture(self._stream)
        if not ok:
            cuda.destroy_graph(graph)
            raise CudaError("execute_async_v3 failed during CUDA-graph capture")
        self._graphs[n] = graph
        return graph

    # -- teardown ------------------------------------------------------------------------------
    def _close(self) -> None:
        if self.cuda is None:
            return
        self.cuda.push()
        try:
            self._release()
        finally:
            self.cuda.pop()
            self.cuda.close()
            self.cuda = None

    def _release(self) -> None:
        """Free in reverse order of creation: graphs, buffers, events, stream, context, engine, runtime."""
        cuda = self.cuda
        for graph in self._graphs.values():
            cuda.destroy_graph(graph)
        self._graphs = {}
        for tensor in self._tensors:
            if tensor.device and not tensor.mapped:
                cuda.free_device(tensor.device)
            cuda.free_pinned(tensor.host)
        self._tensors, self._input, self._output = [], None, None
        for event in self._events:
            cuda.destroy_event(event)
        self._events = []
        if self._stream is not None:
            cuda.destroy_stream(self._stream)
            self._stream = None
        self._context = self._engine = self._runtime = None
        trt_shared.release(self._shared)
        self._shared = None
        self._native_graphs = False
        self._batch = 0
