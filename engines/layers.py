"""What the built engine is made of, from the builder's own VERBOSE log.

With ``ProfilingVerbosity.DETAILED`` and a VERBOSE logger the builder lists every engine layer
once the engine is generated. The engine inspector gives the same on a GPU, but it needs to
deserialize the plan, which these build machines cannot (no CUDA driver), so the log is the
source that works everywhere. Two formats exist:

- TensorRT-RTX: a ``Layers:`` message, one ``Name: ..., LayerType: ..., Inputs: [{ Name, Dimensions,
  ..., Datatype, Format }], Constants: [...], Outputs: [...], ..., Metadata: [ONNX Layer: ...]``
  line per layer;
- TensorRT 8.x/10.x: an ``Engine Layer Information:`` message, one
  ``Layer(Type): name, Tactic: 0x..., in[Float(1,3,224,224)] -> out[Half(...)]`` line per layer
  (10.x writes ``in (Float[1,3,224,224])``), and ``[DlaLayer]``/``[GpuLayer]`` lines for DLA builds.

Only the RTX format was produced on these machines; the TensorRT format is parsed from the line
shapes in NVIDIA's published logs. Device-side: stdlib only.
"""
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from inception_deploy.pipeline.frame_io import GRAPH_PREFIX

SYNC_TYPES = ("signal", "wait")              # TensorRT-RTX stream synchronisation markers: no work
CONV_TYPES = ("correlation", "CaskConvolution", "Convolution", "CaskDeconvolution", "CudnnConvolution",
              "CaskGemmConvolution", "CaskFlattenConvolution")
INT8 = "Int8"
_HEADERS = ("Layers:", "Engine Layer Information:")
_PREFIX = r"^(?:\[[^\]]*\]\s*)*"             # "[01/20/2024-19:48:39] [V] [TRT] " and similar
_RTX_LAYER = re.compile(_PREFIX + r"Name: (?P<name>.*?), LayerType: (?P<type>[\w-]+)")
_TRT_LAYER = re.compile(_PREFIX + r"Layer\((?P<type>[\w-]+)\): (?P<name>.*?), Tactic: (?P<tactic>\S+?), "
                                  r"(?P<inputs>.*?) -> (?P<outputs>.*)$")
_TRT_TENSOR = re.compile(r"\s*(?P<name>.+?)(?:\[(?P<dt1>[A-Za-z0-9]+)\((?P<d1>[-\d,]*)\)\]|"
                         r" \((?P<dt2>[A-Za-z0-9]+)\[(?P<d2>[-\d,]*)\]\))\s*(?:,|$)")
_METADATA = re.compile(r"\[ONNX Layer: ([^\]]*)\]")
_CONCAT_NODE = re.compile(r"(?:^|/)Concat(?:_\d+)?$")
_WEIGHTS = re.compile(r"Total Weights Memory: (\d+) bytes")
_ACTIVATIONS = re.compile(r"Total Activation Memory: (\d+) bytes")


@dataclass
class Tensor:
    name: str
    dims: Tuple[int, ...]
    dtype: str
    format: str = ""


@dataclass
class Layer:
    name: str
    type: str
    inputs: List[Tensor] = field(default_factory=list)
    constants: List[Tensor] = field(default_factory=list)
    outputs: List[Tensor] = field(default_factory=list)
    onnx_nodes: List[str] = field(default_factory=list)

    @property
    def output_precision(self) -> str:
        return self.outputs[0].dtype if self.outputs else "none"


@dataclass
class LayerSummary:
    """Counts over the engine's layers, as recorded in the engine manifest."""

    source: str                                   # "tensorrt-rtx-log" | "tensorrt-log" | "none"
    total: int = 0                                # layers doing work (sync markers excluded)
    by_type: Dict[str, int] = field(default_factory=dict)
    by_output_precision: Dict[str, int] = field(default_factory=dict)
    reformat_layers: int = 0                      # layers that only change type/layout
    reformat_names: List[str] = field(default_factory=list)
    concat_non_int8: List[Dict[str, str]] = field(default_factory=list)  # tensors at Concat not in Int8
    # layers of the in-graph frame preprocessing (pipeline.frame_graph) by output precision: FP32 by
    # design, so they are left out of concat_non_int8
    frame_preprocess_precision: Dict[str, int] = field(default_factory=dict)
    conv_layers: int = 0
    conv_input_precision: Dict[str, int] = field(default_factory=dict)
    conv_weight_precision: Dict[str, int] = field(default_factory=dict)  # TensorRT-RTX logs only
    dla_layers: int = 0
    gpu_layers: int = 0
    sync_layers: int = 0
    weights_bytes: Optional[int] = None
    activation_bytes: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One line for summaries: layer count, convolution input precision, reformats."""
        conv = ", ".join("%d %s" % (n, dt) for dt, n in sorted(self.conv_input_precision.items()))
        text = "%d layers" % self.total
        if self.conv_layers:
            text += " (conv inputs: %s)" % conv
        text += ", %d reformat" % self.reformat_layers
        if self.dla_layers:
            text += ", %d on DLA / %d on GPU" % (self.dla_layers, self.gpu_layers)
        return text


def _section(text: str) -> List[str]:
    lines = text.splitlines()
    start = 0
    for i, line in enumerate(lines):
        if any(line.rstrip().endswith(h) for h in _HEADERS):
            start = i + 1
    return lines[start:]


def _balanced(text: str, start: int) -> Tuple[str, int]:
    """The text inside the bracket at ``start`` (``[`` or ``{``) and the index after its close."""
    pairs = {"[": "]", "{": "}", "(": ")"}
    stack = [pairs[text[start]]]
    i = start + 1
    while i < len(text) and stack:
        ch = text[i]
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch == stack[-1]:
            stack.pop()
        i += 1
    return text[start + 1:i - 1], i


def _dims(text: str) -> Tuple[int, ...]:
    return tuple(int(d) for d in text.split(",") if d.strip().lstrip("-").isdigit())


def _rtx_tensors(line: str, key: str) -> List[Tensor]:
    at = line.find(key + ": [")
    if at < 0:
        return []
    body, _ = _balanced(line, at + len(key) + 2)
    tensors = []
    i = 0
    while True:
        i = body.find("{", i)
        if i < 0:
            break
        block, i = _balanced(body, i)
        name = re.search(r"Name: (.*?), Dimensions: \[([^\]]*)\]", block)
        dtype = re.search(r"Datatype: (\w+)", block)
        fmt = re.search(r"Format: (.*)$", block.strip())
        if name:
            tensors.append(Tensor(name=name.group(1), dims=_dims(name.group(2)),
                                  dtype=dtype.group(1) if dtype else "", format=fmt.group(1) if fmt else ""))
    return tensors


def _parse_rtx(line: str, m: Any) -> Layer:
    meta_at = line.find("Metadata: ")
    nodes = _METADATA.findall(line[meta_at:]) if meta_at >= 0 else []
    return Layer(name=m.group("name"), type=m.group("type"), inputs=_rtx_tensors(line, "Inputs"),
                 constants=_rtx_tensors(line, "Constants"), outputs=_rtx_tensors(line, "Outputs"), onnx_nodes=nodes)


def _trt_tensors(text: str) -> List[Tensor]:
    out = []
    for m in _TRT_TENSOR.finditer(text.strip()):
        dtype = m.group("dt1") or m.group("dt2")
        out.append(Tensor(name=m.group("name").strip(), dims=_dims(m.group("d1") or m.group("d2") or ""),
                          dtype=dtype))
    return out


def _parse_trt(m: Any) -> Layer:
    return Layer(name=m.group("name"), type=m.group("type"), inputs=_trt_tensors(m.group("inputs")),
                 outputs=_trt_tensors(m.group("outputs")))


def parse_layers(text: str) -> Tuple[str, List[Layer]]:
    """The engine layers in a builder log (the last layer listing, if several builds logged)."""
    layers: List[Layer] = []
    source = "none"
    for line in _section(text):
        m = _RTX_LAYER.match(line)
        if m:
            layers.append(_parse_rtx(line, m))
            source = "tensorrt-rtx-log"
            continue
        m = _TRT_LAYER.match(line)
        if m:
            layers.append(_parse_trt(m))
            source = "tensorrt-log"
    return source, layers


def _is_reformat(layer: Layer) -> bool:
    """A layer that only changes data type and/or memory layout (TensorRT's Reformat; in
    TensorRT-RTX a generated kernel with one input, one output, no per-channel constants and the
    same shape, up to channel padding)."""
    if layer.type == "Reformat" or "Reformatting CopyNode" in layer.name:
        return True
    if layer.type != "kgen" or len(layer.inputs) != 1 or len(layer.outputs) != 1:
        return False
    if any(_volume(c.dims) > 1 for c in layer.constants):
        return False
    a, b = layer.inputs[0].dims, layer.outputs[0].dims
    if len(a) != len(b):
        return False
    return all(x == y or (i == 1 and y >= x) for i, (x, y) in enumerate(zip(a, b)))


def _volume(dims: Tuple[int, ...]) -> int:
    v = 1
    for d in dims:
        v *= max(d, 1)
    return v


def _concat_tensors(layer: Layer) -> List[Tensor]:
    """Tensors at a Concat: outputs of a layer that contains (or is) a Concat, and any tensor
    whose name says it is a Concat's input or output."""
    fused = layer.type in ("Concatenation", "Concat") or any(
        _CONCAT_NODE.search(n.strip()) for n in layer.onnx_nodes)
    picked = list(layer.outputs) if fused else []
    picked += [t for t in layer.inputs + layer.outputs if "concat" in t.name.lower()]
    return picked


def _in_frame_preprocess(layer: Layer) -> bool:
    """Every ONNX node fused into the layer is a frame-preprocessing node (or its name says so)."""
    if layer.onnx_nodes:
        return all(n.strip().startswith(GRAPH_PREFIX) for n in layer.onnx_nodes)
    return layer.name.startswith(GRAPH_PREFIX)


def summarize(source: str, layers: List[Layer], text: str = "") -> LayerSummary:
    s = LayerSummary(source=source)
    seen_concat = set()
    for layer in layers:
        if layer.type in SYNC_TYPES:
            s.sync_layers += 1
            continue
        s.total += 1
        s.by_type[layer.type] = s.by_type.get(layer.type, 0) + 1
        p = layer.output_precision
        s.by_output_precision[p] = s.by_output_precision.get(p, 0) + 1
        if _is_reformat(layer):
            s.reformat_layers += 1
            s.reformat_names.append(layer.name)
        if layer.type in CONV_TYPES:
            s.conv_layers += 1
            dt = layer.inputs[0].dtype if layer.inputs else "unknown"
            s.conv_input_precision[dt] = s.conv_input_precision.get(dt, 0) + 1
            if layer.constants:
                wt = layer.constants[0].dtype
                s.conv_weight_precision[wt] = s.conv_weight_precision.get(wt, 0) + 1
        if _in_frame_preprocess(layer):
            s.frame_preprocess_precision[p] = s.frame_preprocess_precision.get(p, 0) + 1
            continue
        for t in _concat_tensors(layer):
            if t.dtype != INT8 and t.name not in seen_concat:
                seen_concat.add(t.name)
                s.concat_non_int8.append({"layer": layer.name, "tensor": t.name, "dtype": t.dtype})
        if layer.type.upper() == "DLA":
            s.dla_layers += 1
    dla_lines = len(re.findall(r"\[DlaLayer\]", text))
    gpu_lines = len(re.findall(r"\[GpuLayer\]", text))
    if dla_lines or gpu_lines:
        s.dla_layers, s.gpu_layers = dla_lines, gpu_lines
    else:
        s.gpu_layers = s.total - s.dla_layers
    weights = _WEIGHTS.findall(text)
    activations = _ACTIVATIONS.findall(text)
    s.weights_bytes = int(weights[-1]) if weights else None
    s.activation_bytes = int(activations[-1]) if activations else None
    return s


def parse_layers_log(text: str) -> LayerSummary:
    """The :class:`LayerSummary` of the last engine listed in a VERBOSE/DETAILED builder log."""
    source, layers = parse_layers(text)
    return summarize(source, layers, text)
