"""The few CUDA calls the TensorRT runner needs, behind one small interface, two implementations.

- :class:`PycudaApi`: pycuda, as NVIDIA's TensorRT samples and jetson-inference use (page-locked
  host arrays, ``mem_alloc``, ``Stream``, ``Event``). pycuda has no stream-capture API, so the
  CUDA-graph path borrows cuda-python's runtime calls on pycuda's stream when cuda-python is there.
- :class:`CudaRuntimeApi`: cuda-python's ``cuda.bindings.runtime`` (NVIDIA's ``common_runtime.py``
  style), the fallback where pycuda cannot be built. Every call returns ``(error, *values)``;
  :func:`check` turns any error into :class:`CudaError` naming the call.

Both make the device current per thread (:meth:`CudaApi.push` / :meth:`CudaApi.pop`), so a runner
created on one thread can be used from another (one thread at a time). Device-side: numpy +
optional pycuda / cuda-python, Python 3.8. This code has not been executed against a real GPU on
the development machines (no driver there); its call sequence is tested against a recording fake.
"""
import ctypes
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from inception_deploy.pipeline.errors import Unsupported, UserError


class CudaError(RuntimeError):
    """A CUDA call returned an error (after the device was found and set up)."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    compute_capability: Tuple[int, int]
    integrated: bool = False              # shares DRAM with the CPU (Jetson): mapped memory saves the copies
    can_map_host_memory: bool = False

    @property
    def zero_copy(self) -> bool:
        """Mapped (zero-copy) host memory is the faster choice: an integrated GPU that can map it."""
        return self.integrated and self.can_map_host_memory

    @property
    def cc(self) -> str:
        """``"8.7"``: the compute capability as engine manifests and targets write it."""
        return "%d.%d" % self.compute_capability


class CudaApi:
    """What the TensorRT runner asks of CUDA. Host arrays are page-locked numpy arrays; device
    buffers are plain integer addresses; streams, events and graphs are opaque handles."""

    name = "cuda"

    def open(self, device: int) -> DeviceInfo:
        """Initialise CUDA on ``device``; raises :class:`Unsupported` when there is no driver or GPU."""
        raise NotImplementedError

    def push(self) -> None:
        """Make this runner's device/context current on the calling thread."""

    def pop(self) -> None:
        """Undo :meth:`push`."""

    def close(self) -> None:
        """Release the device/context taken by :meth:`open`."""

    def alloc_pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        raise NotImplementedError

    def free_pinned(self, array: np.ndarray) -> None:
        raise NotImplementedError

    def alloc_mapped(self, shape: Sequence[int], dtype: Any) -> Tuple[np.ndarray, int]:
        """Page-locked host memory mapped into the GPU's address space (zero-copy): the array and the
        device address the GPU reads and writes it at. Freed with :meth:`free_pinned`."""
        raise NotImplementedError

    def alloc_device(self, nbytes: int) -> int:
        raise NotImplementedError

    def free_device(self, address: int) -> None:
        raise NotImplementedError

    def create_stream(self) -> Any:
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        """The ``cudaStream_t`` as an integer, for ``execute_async_v3(stream_handle)``."""
        raise NotImplementedError

    def destroy_stream(self, stream: Any) -> None:
        raise NotImplementedError

    def copy_htod_async(self, device: int, host: np.ndarray, stream: Any) -> None:
        """Copy all of ``host`` (a contiguous view of a pinned array) to ``device``."""
        raise NotImplementedError

    def copy_dtoh_async(self, host: np.ndarray, device: int, stream: Any) -> None:
        """Fill all of ``host`` (a contiguous view of a pinned array) from ``device``."""
        raise NotImplementedError

    def synchronize(self, stream: Any) -> None:
        raise NotImplementedError

    def create_event(self) -> Any:
        raise NotImplementedError

    def record_event(self, event: Any, stream: Any) -> None:
        raise NotImplementedError

    def elapsed_ms(self, start: Any, end: Any) -> float:
        """GPU time between two recorded events (waits for ``end``)."""
        raise NotImplementedError

    def destroy_event(self, event: Any) -> None:
        raise NotImplementedError

    # CUDA graphs: capture what is enqueued on ``stream`` between begin and end, then replay it.
    def begin_capture(self, stream: Any) -> None:
        raise NotImplementedError

    def end_capture(self, stream: Any) -> Any:
        """End the capture and instantiate it; returns an executable graph."""
        raise NotImplementedError

    def launch_graph(self, graph_exec: Any, stream: Any) -> None:
        raise NotImplementedError

    def destroy_graph(self, graph_exec: Any) -> None:
        raise NotImplementedError


# -- cuda-python (cuda.bindings.runtime) ---------------------------------------------------------
def import_cudart() -> Any:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (12.x/13.x), else the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6
        return cudart


def check(cudart: Any, result: Any, call: str) -> Any:
    """``(err, *values)`` -> values (one value unwrapped, none -> None); any error -> CudaError."""
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if err != cudart.cudaError_t.cudaSuccess:
        raise CudaError("%s failed: %s" % (call, error_text(cudart, err)))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def error_text(cudart: Any, err: Any) -> str:
    name = getattr(err, "name", str(err))
    try:
        status, text = cudart.cudaGetErrorString(err)
        if status == cudart.cudaError_t.cudaSuccess and text:
            return "%s (%s)" % (name, text.decode() if isinstance(text, bytes) else text)
    except Exception:
        pass
    return str(name)


class CudaRuntimeApi(CudaApi):
    """cuda-python runtime calls on the device's primary context (what TensorRT itself uses)."""

    name = "cuda-python"

    def __init__(self, cudart: Optional[Any] = None) -> None:
        self.cudart = cudart if cudart is not None else import_cudart()
        self.device = 0
        self._pinned: Dict[int, int] = {}       # numpy data address -> cudaMallocHost pointer

    def _call(self, call: str, *args: Any) -> Any:
        return check(self.cudart, getattr(self.cudart, call)(*args), call)

    def open(self, device: int) -> DeviceInfo:
        rt = self.cudart
        result = rt.cudaGetDeviceCount()
        if result[0] != rt.cudaError_t.cudaSuccess:
            raise Unsupported("no usable NVIDIA driver/GPU here (cudaGetDeviceCount: %s)" % error_text(rt, result[0]))
        count = result[1]
        if not 0 <= device < count:
            raise Unsupported("CUDA device %d not found (%d device(s) visible)" % (device, count))
        self.device = device
        self._call("cudaSetDevice", device)
        props = self._call("cudaGetDeviceProperties", device)
        name = props.name
        name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, bytes) else str(name)
        return DeviceInfo(device, name, (int(props.major), int(props.minor)),
                          integrated=bool(getattr(props, "integrated", 0)),
                          can_map_host_memory=bool(getattr(props, "canMapHostMemory", 0)))

    def push(self) -> None:
        self._call("cudaSetDevice", self.device)   # the current device is per host thread

    def alloc_pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        pointer = int(self._call("cudaMallocHost", nbytes))
        raw = (ctypes.c_char * nbytes).from_address(pointer)
        array = np.frombuffer(raw, dtype=dtype).reshape(tuple(shape))
        self._pinned[array.ctypes.data] = pointer
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        pointer = self._pinned.pop(array.ctypes.data, None)
        if pointer is not None:
            self._call("cudaFreeHost", pointer)

    def alloc_mapped(self, shape: Sequence[int], dtype: Any) -> Tuple[np.ndarray, int]:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        pointer = int(self._call("cudaHostAlloc", nbytes, self.cudart.cudaHostAllocMapped))
        array = np.frombuffer((ctypes.c_char * nbytes).from_address(pointer), dtype=dtype).reshape(tuple(shape))
        self._pinned[array.ctypes.data] = pointer
        return array, int(self._call("cudaHostGetDevicePointer", pointer, 0))

    def alloc_device(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", int(nbytes)))

    def free_device(self, address: int) -> None:
        self._call("cudaFree", address)

    def create_stream(self) -> Any:
        return self._call("cudaStreamCreateWithFlags", self.cudart.cudaStreamNonBlocking)

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def destroy_stream(self, stream: Any) -> None:
        self._call("cudaStreamDestroy", stream)

    def copy_htod_async(self, device: int, host: np.ndarray, stream: Any) -> None:
        self._call("cudaMemcpyAsync", device, host.ctypes.data, host.nbytes,
                   self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)

    def copy_dtoh_async(self, host: np.ndarray, device: int, stream: Any) -> None:
        self._call("cudaMemcpyAsync", host.ctypes.data, device, host.nbytes,
                   self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)

    def synchronize(self, stream: Any) -> None:
        self._call("cudaStreamSynchronize", stream)

    def create_event(self) -> Any:
        return self._call("cudaEventCreate")

    def record_event(self, event: Any, stream: Any) -> None:
        self._call("cudaEventRecord", event, stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._call("cudaEventSynchronize", end)
        return float(self._call("cudaEventElapsedTime", start, end))

    def destroy_event(self, event: Any) -> None:
        self._call("cudaEventDestroy", event)

    def begin_capture(self, stream: Any) -> None:
        self._call("cudaStreamBeginCapture", stream, self.cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal)

    def end_capture(self, stream: Any) -> Any:
        graph = self._call("cudaStreamEndCapture", stream)
        try:
            # cudaGraphInstantiateWithFlags(graph, flags) is the same call in cuda-python 11.x (CUDA 11.4 on
            # JetPack 5) and 12.x/13.x; cudaGraphInstantiate changed (11.x: graph, log buffer, size)
            return self._call("cudaGraphInstantiateWithFlags", graph, 0)
        finally:
            self._call("cudaGraphDestroy", graph)   # the executable graph keeps what it needs

    def launch_graph(self, graph_exec: Any, stream: Any) -> None:
        self._call("cudaGraphLaunch", graph_exec, stream)

    def destroy_graph(self, graph_exec: Any) -> None:
        self._call("cudaGraphExecDestroy", graph_exec)


# -- pycuda -------------------------------------------------------------------------------------
class PycudaApi(CudaApi):
    """pycuda on the device's primary context (retained, pushed per call, so any thread can use it)."""

    name = "pycuda"

    def __init__(self, driver: Optional[Any] = None) -> None:
        if driver is None:
            import pycuda.driver as driver  # noqa: F811 - optional, device-side dependency
        self.driver = driver
        self._context: Any = None
        self._device_buffers: Dict[int, Any] = {}
        self._graphs: Optional[CudaRuntimeApi] = None

    def _guard(self, call: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.driver.Error as e:
            raise CudaError("%s failed: %s" % (call, e)) from None

    def open(self, device: int) -> DeviceInfo:
        drv = self.driver
        try:
            drv.init()
            count = drv.Device.count()
        except drv.Error as e:
            raise Unsupported("no usable NVIDIA driver/GPU here (pycuda: %s)" % e) from None
        if not 0 <= device < count:
            raise Unsupported("CUDA device %d not found (%d device(s) visible)" % (device, count))
        dev = drv.Device(device)
        self._context = self._guard("cuDevicePrimaryCtxRetain", dev.retain_primary_context)
        major, minor = dev.compute_capability()
        attrs = getattr(drv, "device_attribute", None)

        def attr(name: str) -> bool:
            key = getattr(attrs, name, None)
            return bool(dev.get_attribute(key)) if key is not None and hasattr(dev, "get_attribute") else False

        return DeviceInfo(device, str(dev.name()), (int(major), int(minor)), integrated=attr("INTEGRATED"),
                          can_map_host_memory=attr("CAN_MAP_HOST_MEMORY"))

    def push(self) -> None:
        self._guard("cuCtxPushCurrent", self._context.push)

    def pop(self) -> None:
        self._guard("cuCtxPopCurrent", self.driver.Context.pop)

    def close(self) -> None:
        self._context = None   # pycuda releases the retained primary context when it is collected

    def alloc_pinned(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        return self._guard("cuMemHostAlloc", self.driver.pagelocked_empty, tuple(shape), np.dtype(dtype))

    def free_pinned(self, array: np.ndarray) -> None:
        base = array.base
        if base is not None and hasattr(base, "free"):
            self._guard("cuMemFreeHost", base.free)

    def alloc_mapped(self, shape: Sequence[int], dtype: Any) -> Tuple[np.ndarray, int]:
        drv = self.driver
        array = self._guard("cuMemHostAlloc", drv.pagelocked_empty, tuple(shape), np.dtype(dtype), "C",
                            drv.host_alloc_flags.DEVICEMAP)
        return array, int(self._guard("cuMemHostGetDevicePointer", array.base.get_device_pointer))

    def alloc_device(self, nbytes: int) -> int:
        allocation = self._guard("cuMemAlloc", self.driver.mem_alloc, int(nbytes))
        address = int(allocation)
        self._device_buffers[address] = allocation
        return address

    def free_device(self, address: int) -> None:
        allocation = self._device_buffers.pop(address, None)
        if allocation is not None:
            self._guard("cuMemFree", allocation.free)

    def create_stream(self) -> Any:
        return self._guard("cuStreamCreate", self.driver.Stream)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def destroy_stream(self, stream: Any) -> None:
        pass   # freed with the Stream object

    def copy_htod_async(self, device: int, host: np.ndarray, stream: Any) -> None:
        self._guard("cuMemcpyHtoDAsync", self.driver.memcpy_htod_async, device, host, stream)

    def copy_dtoh_async(self, host: np.ndarray, device: int, stream: Any) -> None:
        self._guard("cuMemcpyDtoHAsync", self.driver.memcpy_dtoh_async, host, device, stream)

    def synchronize(self, stream: Any) -> None:
        self._guard("cuStreamSynchronize", stream.synchronize)

    def create_event(self) -> Any:
        return self._guard("cuEventCreate", self.driver.Event)

    def record_event(self, event: Any, stream: Any) -> None:
        self._guard("cuEventRecord", event.record, stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        self._guard("cuEventSynchronize", end.synchronize)
        return float(self._guard("cuEventElapsedTime", end.time_since, start))

    def destroy_event(self, event: Any) -> None:
        pass   # freed with the Event object

    def _graph_api(self) -> CudaRuntimeApi:
        if self._graphs is None:
            try:
                self._graphs = CudaRuntimeApi()
            except ImportError:
                raise Unsupported("CUDA-graph replay with pycuda needs cuda-python for stream capture "
                                  "(pip install cuda-python), or run without cuda_graph") from None
        return self._graphs

    def begin_capture(self, stream: Any) -> None:
        self._graph_api().begin_capture(self.stream_handle(stream))

    def end_capture(self, stream: Any) -> Any:
        return self._graph_api().end_capture(self.stream_handle(stream))

    def launch_graph(self, graph_exec: Any, stream: Any) -> None:
        self._graph_api().launch_graph(graph_exec, self.stream_handle(stream))

    def destroy_graph(self, graph_exec: Any) -> None:
        self._graph_api().destroy_graph(graph_exec)


CUDA_APIS = ("pycuda", "cuda-python")


def load_cuda_api(prefer: Optional[str] = None) -> CudaApi:
    """pycuda where installed (NVIDIA's samples), else cuda-python; :class:`Unsupported` when neither is."""
    if prefer is not None and prefer not in CUDA_APIS:
        raise UserError("unknown CUDA API %r; expected one of %s" % (prefer, ", ".join(CUDA_APIS)))
    order: List[str] = [prefer] if prefer else list(CUDA_APIS)
    errors = []
    for name in order:
        try:
            return PycudaApi() if name == "pycuda" else CudaRuntimeApi()
        except ImportError as e:
            errors.append("%s: %s" % (name, e))
    raise Unsupported("the TensorRT runner needs pycuda or cuda-python for host/device buffers and found neither "
                      "(%s); install one (pip install cuda-python)" % "; ".join(errors))
