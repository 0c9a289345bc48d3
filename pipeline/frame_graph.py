"""Prepend the camera-frame preprocessing to an ONNX classifier, so TensorRT runs it on the GPU.

``add_frame_input(model, pre, (H, W))`` turns a network that takes ``input`` (N, 3, h, w) float32
into one that takes ``frame`` (N, H, W, 3) uint8 BGR, the bytes a camera (``cv2.VideoCapture``,
``nvvidconv ... format=BGR``) delivers. The added nodes are the plan of
:mod:`pipeline.frame_plan` for that frame size, generated from the one preprocessing description:

    Cast -> Slice (the crop's source region) -> Transpose to NCHW
    -> AveragePool (box reduction; partial blocks excluded from the count, as Image.reduce)
    -> banded MatMul with PIL's filter weights per axis (horizontal, then vertical)
    -> Gather BGR -> RGB -> Mul / Add (x / 255, mean, std) -> the network's ``input``

Each resampling step rounds to 8 bits (``Floor(x + 0.5)``, ``Clip``) as PIL does, so the graph's
output equals the CPU fast path's (:func:`pipeline.frame_plan.run_numpy` is the same arithmetic)
and stays within PIL's rounding of the reference path. The filter runs as MatMuls with
precomputed weights instead of ONNX ``Resize``: TensorRT's ``Resize`` has no antialiasing, and the
weights reproduce PIL's widened kernels exactly. The prefix holds no Q/DQ node and is added after
quantization (:func:`prefix_quantization_problems` checks it), so it stays FP32 in every engine.
Build-side (onnx); the resulting model runs in ONNX Runtime and TensorRT alike.
"""
import json
from typing import Any, Dict, List, Tuple

import numpy as np

from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.frame_io import GRAPH_PREFIX, frame_size_name
from inception_deploy.pipeline.frame_plan import FramePlan, bands, plan_frame, plan_matrices
from inception_deploy.pipeline.preprocess import Preprocessing

FRAME_INPUT = "frame"
PREFIX = GRAPH_PREFIX                 # every added node and constant is named under this prefix
METADATA_KEY = "inception_deploy.frame_input"


class _Graph:
    """Accumulates nodes and constants under :data:`PREFIX` with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: List[Any] = []
        self.constants: List[Any] = []
        self._count = 0

    def const(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        full = PREFIX + name
        self.constants.append(self.numpy_helper.from_array(np.asarray(value, dtype=dtype), full))
        return full

    def op(self, op_type: str, inputs: List[str], output: str = "", **attrs: Any) -> str:
        self._count += 1
        out = output or "%s%s_%d" % (PREFIX, op_type.lower(), self._count)
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name="%s%s_%d" % (PREFIX, op_type, self._count),
                                                **attrs))
        return out

    def round8(self, x: str) -> str:
        """Floor(x + 0.5) clipped to [0, 255]: PIL's 8-bit result of a resampling step."""
        half = self.const("half_%d" % self._count, 0.5)
        rounded = self.op("Floor", [self.op("Add", [x, half])])
        return self.op("Clip", [rounded, self.const("zero_%d" % self._count, 0.0),
                                self.const("max_%d" % self._count, 255.0)])


def preprocessing_graph(pre: Preprocessing, plan: FramePlan, output: str) -> _Graph:
    """Nodes from ``frame`` (N, H, W, 3) uint8 BGR to ``output`` (N, 3, h, w) float32."""
    from onnx import TensorProto

    g = _Graph()
    y0, x0, y1, x1 = plan.region
    x = g.op("Cast", [FRAME_INPUT], to=TensorProto.FLOAT)
    x = g.op("Slice", [x, g.const("region_starts", [y0, x0], np.int64), g.const("region_ends", [y1, x1], np.int64),
                      g.const("region_axes", [1, 2], np.int64)])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    ky, kx = plan.factor
    if ky > 1 or kx > 1:
        (ny, nx), (rh, rw) = plan.reduced_size, (y1 - y0, x1 - x0)
        x = g.round8(g.op("AveragePool", [x], kernel_shape=[ky, kx], strides=[ky, kx], count_include_pad=0,
                          pads=[0, 0, ny * ky - rh, nx * kx - rw]))
    wy, wx = plan_matrices(plan)
    x = g.round8(_banded_matmul(g, x, wx, axis=3))
    x = g.round8(_banded_matmul(g, x, wy, axis=2))
    x = g.op("Gather", [x, g.const("bgr_to_rgb", [2, 1, 0], np.int64)], axis=1)
    std = np.asarray(pre.std, dtype=np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(1, 3, 1, 1)
    bias = (-np.asarray(pre.mean, dtype=np.float32) / std).astype(np.float32).reshape(1, 3, 1, 1)
    g.op("Add", [g.op("Mul", [x, g.const("scale", scale)]), g.const("bias", bias)], output=output)
    return g


def _banded_matmul(g: _Graph, x: str, weights: np.ndarray, axis: int) -> str:
    """Resample ``x`` (N, 3, rows, cols) along ``axis`` (3: columns, 2: rows) with ``weights``
    (out, in), one MatMul per band of outputs over the input span it reads, then Concat."""
    parts = []
    for o0, o1, i0, i1 in bands(weights):
        block = weights[o0:o1, i0:i1]
        name = "w%d_%d_%d" % (axis, o0, o1)
        span = x if (i0, i1) == (0, weights.shape[1]) else g.op(
            "Slice", [x, g.const(name + "_starts", [i0], np.int64), g.const(name + "_ends", [i1], np.int64),
                      g.const(name + "_axes", [axis], np.int64)])
        if axis == 3:
            parts.append(g.op("MatMul", [span, g.const(name, np.ascontiguousarray(block.T))]))
        else:
            parts.append(g.op("MatMul", [g.const(name, block), span]))
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=axis)


def add_frame_input(model: Any, pre: Preprocessing, frame_size: Tuple[int, int], network_input: str = "input") -> Any:
    """A copy of ``model`` (ModelProto) whose input is ``frame`` (N, H, W, 3) uint8 BGR."""
    import onnx
    from onnx import TensorProto, helper

    graph = model.graph
    inputs = [i for i in graph.input if i.name not in {init.name for init in graph.initializer}]
    if len(inputs) != 1 or inputs[0].name != network_input:
        raise UserError("expected one graph input %r (N, 3, H, W) float32 to prepend the frame preprocessing to, "
                        "found %s; use a model.onnx written by inception-deploy export"
                        % (network_input, [i.name for i in inputs]))
    if any(n.name.startswith(PREFIX) for n in graph.node):
        raise UserError("this model already takes camera frames (its graph has %s nodes); prepend to the network "
                        "model instead" % PREFIX.rstrip("/"))
    dims = inputs[0].type.tensor_type.shape.dim
    if [d.dim_value for d in dims[1:]] != [3, pre.input_size[0], pre.input_size[1]]:
        raise UserError("the model's input is %s, but its preprocessing makes 3x%dx%d; the manifest does not belong "
                        "to this model" % ([d.dim_value or d.dim_param for d in dims], *pre.input_size))
    plan = plan_frame(pre, frame_size[0], frame_size[1])
    g = preprocessing_graph(pre, plan, network_input)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    batch = dims[0].dim_param or dims[0].dim_value or "batch"
    frame = helper.make_tensor_value_info(FRAME_INPUT, TensorProto.UINT8, [batch, frame_size[0], frame_size[1], 3])
    del out.graph.input[:]
    out.graph.input.extend([frame] + [i for i in model.graph.input if i.name != network_input])
    nodes = list(g.nodes) + list(model.graph.node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    out.graph.initializer.extend(g.constants)
    meta = {p.key: p.value for p in out.metadata_props}
    meta[METADATA_KEY] = json.dumps(frame_input_record(pre, frame_size))
    del out.metadata_props[:]
    for key, value in meta.items():
        entry = out.metadata_props.add()
        entry.key, entry.value = key, value
    return out


def frame_input_record(pre: Preprocessing, frame_size: Tuple[int, int]) -> Dict[str, Any]:
    """The manifest's ``io.input`` for a frame-input model (and the ONNX metadata entry)."""
    plan = plan_frame(pre, frame_size[0], frame_size[1])
    return {"name": FRAME_INPUT, "shape": ["batch", frame_size[0], frame_size[1], 3], "dtype": "uint8",
            "layout": "NHWC", "color": "BGR", "frame_size": frame_size_name(frame_size),
            "preprocessing": "in-graph (%s nodes): %s" % (PREFIX.rstrip("/"), plan_summary(plan)),
            "plan": plan.to_dict()}


def plan_summary(plan: FramePlan) -> str:
    y0, x0, y1, x1 = plan.region
    reduce = ("average %dx%d blocks, " % plan.factor) if plan.factor != (1, 1) else ""
    return ("read rows %d-%d, columns %d-%d; %sresample (%s, PIL's kernels) to %dx%d; BGR->RGB; normalise"
            % (y0, y1, x0, x1, reduce, plan.interpolation, plan.output_size[1], plan.output_size[0]))


def prefix_quantization_problems(model: Any) -> List[str]:
    """Q/DQ nodes inside the frame preprocessing, or prefix nodes fed by one (must be none)."""
    producers = {o: n for n in model.graph.node for o in n.output}
    problems = []
    for node in model.graph.node:
        if not node.name.startswith(PREFIX):
            continue
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problems.append("%s is a %s" % (node.name, node.op_type))
        for name in node.input:
            src = producers.get(name)
            if src is not None and src.op_type == "DequantizeLinear":
                problems.append("%s reads the INT8 tensor %s" % (node.name, name))
    return problems
