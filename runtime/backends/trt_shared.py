"""One deserialized TensorRT engine per plan and device, shared by every runner in the process.

A ``Classifier`` used from several threads gives each thread its own runner, and each runner needs
its own execution context (TensorRT: an engine may be shared by threads, a context may not). The
engine itself, with its weights, is the large part, so it is deserialized once per (plan file and
its sha256, CUDA device, DLA core, TensorRT flavour) and released with its last user: on a Jetson
that is the difference between one copy of the weights in shared DRAM and one per thread.
Device-side: stdlib only.
"""
import threading
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

_LOCK = threading.RLock()
_ENGINES: Dict[Hashable, "SharedEngine"] = {}
_PLUGINS = set()   # flavours whose plugin library is registered
_LOGGERS: Dict[str, Any] = {}   # one TensorRT logger per module and process, as TensorRT expects


class SharedEngine(object):
    """A TensorRT runtime + ICudaEngine and how many runners use it."""

    def __init__(self, key: Hashable, runtime: Any, engine: Any) -> None:
        self.key = key
        self.runtime = runtime
        self.engine = engine
        self.users = 0

    def create_context(self, config: Any = None) -> Any:
        """A new execution context for one runner (serialised: creation is not documented thread-safe)."""
        with _LOCK:
            return self.engine.create_execution_context(config) if config is not None else \
                self.engine.create_execution_context()


def logger_for(trt: Any) -> Any:
    """The process's TensorRT logger for this module, with its plugin library registered once
    (``init_libnvinfer_plugins``: engines using TensorRT's standard plugins deserialize only then)."""
    flavour = trt.__name__
    with _LOCK:
        if flavour not in _LOGGERS:
            _LOGGERS[flavour] = trt.Logger(trt.Logger.WARNING)
        if flavour not in _PLUGINS:
            init = getattr(trt, "init_libnvinfer_plugins", None)
            if init is not None:
                init(_LOGGERS[flavour], "")
            _PLUGINS.add(flavour)
        return _LOGGERS[flavour]


def acquire(key: Hashable, load: Callable[[], Tuple[Any, Any]]) -> SharedEngine:
    """The engine for ``key``, loading it with ``load() -> (runtime, engine)`` the first time."""
    with _LOCK:
        shared = _ENGINES.get(key)
        if shared is None:
            runtime, engine = load()
            shared = _ENGINES[key] = SharedEngine(key, runtime, engine)
        shared.users += 1
        return shared


def release(shared: Optional[SharedEngine]) -> None:
    """One user fewer; the last one frees the engine and its runtime (call with the CUDA context current)."""
    if shared is None:
        return
    with _LOCK:
        shared.users -= 1
        if shared.users <= 0:
            _ENGINES.pop(shared.key, None)
            shared.engine = shared.runtime = None


def live() -> int:
    """How many engines are loaded (for tests and diagnostics)."""
    with _LOCK:
        return len(_ENGINES)
