"""The Python API surface of a TensorRT generation: which names its classes and enums expose.

Feature detection in :mod:`engines.trt_api` looks only at attribute names, so the names each
TensorRT generation really exposes are what its unit tests need. Three real sources give them,
and this module reads each one into the same record (``{"classes": {name: [members]},
"module": [names]}``):

- a live module (``tensorrt_rtx`` here; ``tensorrt`` on a device),
- the published ``tensorrt-stubs`` package (pybind11-stubgen output of a real ``tensorrt``
  build; its ``.pyi`` is read as text because stubgen writes signatures Python cannot parse),
- NVIDIA's pybind11 binding sources (``python/src/**/*.cpp`` of the NVIDIA/TensorRT repository
  at a release tag), for generations with no stubs package (8.5, 8.6, 11.x).

:func:`stand_in` turns a record back into an attribute-only object tree, so the detection code
runs against exactly those names. Stdlib only; ``python -m inception_deploy.engines.api_surface`` regenerates
the snapshots (see ``tests/data/trt_api/README.md``).
"""
import argparse
import json
import re
import types
from typing import Any, Dict, Iterable, List

# The classes feature detection and the builder touch; a snapshot keeps all members of these.
CLASSES = (
    "Builder", "IBuilderConfig", "BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType",
    "DeviceType", "ProfilingVerbosity", "HardwareCompatibilityLevel", "ComputeCapability", "OnnxParser",
    "IInt8Calibrator", "IInt8EntropyCalibrator2", "CalibrationAlgoType", "IProgressMonitor", "ITimingCache",
    "IOptimizationProfile", "ILogger", "Logger", "Runtime", "ICudaEngine", "IExecutionContext",
    "EngineInspector", "LayerInformationFormat", "DataType", "TensorIOMode", "INetworkDefinition",
)

_CLASS_DEF = re.compile(r'py::(?:class_|enum_)<[^;]*?>\s*(?:\w+\s*)?[({]\s*\w+\s*,\s*"(\w+)"', re.S)
_MEMBER = re.compile(r'(?<![\w])\.(?:def|def_property|def_property_readonly|def_readwrite|def_readonly|'
                     r'def_static|def_property_static|value)\(\s*"(\w+)"')
_MODULE_DEF = re.compile(r'\bm\.(?:def|attr)\(\s*"(\w+)"')


def _record(classes: Dict[str, Iterable[str]], module: Iterable[str], source: str, version: str) -> Dict[str, Any]:
    keep = {name: sorted(set(m for m in members if not m.startswith("_")))
            for name, members in classes.items() if name in CLASSES}
    return {"source": source, "version": version, "module": sorted(set(n for n in module if not n.startswith("_"))),
            "classes": dict(sorted(keep.items()))}


def from_module(module: Any, source: str = "") -> Dict[str, Any]:
    """The surface of an imported module (``tensorrt`` or ``tensorrt_rtx``)."""
    names = dir(module)
    classes = {n: dir(getattr(module, n)) for n in names if n in CLASSES}
    return _record(classes, names, source or "live module " + module.__name__, str(getattr(module, "__version__", "")))


def from_pyi(text: str, source: str, version: str) -> Dict[str, Any]:
    """The surface in a pybind11-stubgen ``.pyi`` (members at one indent level under ``class X``)."""
    classes: Dict[str, List[str]] = {}
    module: List[str] = []
    current = None
    for line in text.splitlines():
        m = re.match(r"class (\w+)", line)
        if m:
            current = m.group(1)
            classes[current] = []
            continue
        if line and not line[0].isspace():
            current = None
            m = re.match(r"def (\w+)\(", line) or re.match(r"(\w+)\s*[:=]", line)
            if m:
                module.append(m.group(1))
            continue
        if current:
            m = re.match(r"    def (\w+)\(", line) or re.match(r"    (\w+)\s*:", line)
            if m:
                classes[current].append(m.group(1))
    return _record(classes, list(module) + list(classes), source, version)


def from_pybind_sources(sources: Iterable[str], source: str, version: str) -> Dict[str, Any]:
    """The surface bound by pybind11 C++ sources: ``py::class_/enum_<...>(m, "Name")`` then its
    ``.def("x")``/``.def_property("x")``/``.value("X")`` chain. Preprocessor conditionals are
    ignored on purpose: ``EXPORT_ALL_BINDINGS`` is on in the full ``tensorrt`` package."""
    classes: Dict[str, List[str]] = {}
    module: List[str] = []
    for text in sources:
        text = re.sub(r"//[^\n]*", "", text)
        starts = [(m.start(), m.group(1)) for m in _CLASS_DEF.finditer(text)]
        module += _MODULE_DEF.findall(text)
        for i, (pos, name) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(text)
            classes.setdefault(name, []).extend(_MEMBER.findall(text[pos:end]))
        module += [name for _, name in starts]
    return _record(classes, module, source, version)


class _Members(object):
    """An attribute-only stand-in for one class or enum: it has exactly the recorded names."""

    def __init__(self, name: str, members: Iterable[str]) -> None:
        self.__name__ = name
        for member in members:
            setattr(self, member, "%s.%s" % (name, member))


def stand_in(surface: Dict[str, Any], name: str = "tensorrt") -> types.ModuleType:
    """A module object with the surface's names (classes become attribute-only stand-ins).

    Only for feature detection tests: nothing on it can be called.
    """
    module = types.ModuleType(name)
    for n in surface["module"]:
        setattr(module, n, "%s.%s" % (name, n))
    for cls, members in surface["classes"].items():
        setattr(module, cls, _Members(cls, members))
    module.__version__ = surface.get("version", "")  # type: ignore[attr-defined]
    return module


def main() -> None:
    p = argparse.ArgumentParser(description="Write a TensorRT API surface snapshot as JSON.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--module", help="import this module (tensorrt or tensorrt_rtx)")
    src.add_argument("--pyi", help="a tensorrt-stubs .pyi file (tensorrt_bindings/tensorrt.pyi)")
    src.add_argument("--pybind", nargs="+", help="pybind11 binding sources (python/src/**/*.cpp)")
    p.add_argument("--source", default="", help="where the input came from (recorded)")
    p.add_argument("--version", default="", help="the TensorRT version the input describes")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    if args.module:
        import importlib
        surface = from_module(importlib.import_module(args.module), args.source)
    elif args.pyi:
        with open(args.pyi, encoding="utf-8") as f:
            surface = from_pyi(f.read(), args.source or args.pyi, args.version)
    else:
        texts = []
        for path in args.pybind:
            with open(path, encoding="utf-8") as f:
                texts.append(f.read())
        surface = from_pybind_sources(texts, args.source, args.version)
    from inception_deploy.pipeline import atomic
    atomic.write_text(args.out, json.dumps(surface, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
