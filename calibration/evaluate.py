"""ONNX Runtime as the accuracy reference: logits of a model, and per-layer error against FP32.

CPU ONNX Runtime runs Q/DQ graphs with real INT8 arithmetic where it can, so its INT8 outputs are
a faithful accuracy reference (not a latency one: Q/DQ is slower than FP32 on these CPUs).
"""
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Set, Tuple

import numpy as np

from inception_deploy.pipeline.onnx_io import INPUT_NAME, OUTPUT_NAME, ort_session


def predict(onnx_path: str, images: np.ndarray, batch_size: int = 64, input_name: str = INPUT_NAME,
            output_name: str = OUTPUT_NAME) -> np.ndarray:
    """Logits (N, classes) float32 for preprocessed ``images`` (N, 3, H, W)."""
    session = ort_session(onnx_path)
    out = [session.run([output_name], {input_name: images[i:i + batch_size]})[0]
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out).astype(np.float32)


@dataclass
class NodeSensitivity:
    node: str
    op: str
    activation_error: float   # ||x - dq(q(x))||^2 / ||x||^2 over its quantized activation inputs (FP32 x)
    weight_error: float       # the same for its per-channel quantized weights
    score: float              # their sum: the noise this node's own quantization injects

    def to_dict(self) -> Dict[str, object]:
        return {"node": self.node, "op": self.op, "activation_error": self.activation_error,
                "weight_error": self.weight_error, "score": self.score}


def _fake_quant(x: np.ndarray, scale: np.ndarray, axis: int = -1) -> np.ndarray:
    """Symmetric INT8 quantize-dequantize (zero point 0, saturating), per tensor or along ``axis``."""
    s = np.asarray(scale, dtype=np.float64)
    if s.size > 1:
        shape = [1] * x.ndim
        shape[axis] = s.size
        s = s.reshape(shape)
    return np.clip(np.round(x / s), -128, 127) * s


def rank_sensitivity(fp32_path: str, int8_path: str, images: np.ndarray, candidates: Sequence[str],
                     input_name: str = INPUT_NAME, batch_size: int = 16) -> List[NodeSensitivity]:
    """Quantized nodes ranked by the relative quantization noise at their own inputs (one FP32 pass).

    Each node is judged in isolation: its activation inputs as the FP32 model computes them on real
    images, quantized with the scale the Q/DQ graph gives them, and its weights quantized per
    channel. Errors measured at the INT8 model's outputs would mix in everything upstream (and
    saturate once an early layer is broken), so they point at deep layers rather than at the cause.
    """
    import onnx

    fp32 = onnx.load(fp32_path)
    activations, weight_error, ops = _quantized_inputs(onnx.load(int8_path), fp32, set(candidates))
    error = _activation_errors(fp32, activations, images, input_name, batch_size)
    ranked = []
    for name, acts in activations.items():
        act_err = sum(error.get(t, 0.0) for t in acts)
        ranked.append(NodeSensitivity(name, ops[name], act_err, weight_error[name], act_err + weight_error[name]))
    ranked.sort(key=lambda r: -r.score)
    return ranked


def _quantized_inputs(int8: Any, fp32: Any, wanted: Set[str]) -> Tuple[Dict[str, Dict[str, Any]], Dict[str, float],
                                                                        Dict[str, str]]:
    """For each wanted node of the Q/DQ graph: {activation tensor: its scale}, its weights' relative
    per-channel quantization error (against the FP32 weights, also where they are stored as INT8), its op."""
    from onnx import numpy_helper

    graph = int8.graph
    inits = {i.name: i for i in graph.initializer}
    fp32_inits = {i.name: i for i in fp32.graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    activations: Dict[str, Dict[str, Any]] = {}
    weight_error: Dict[str, float] = {}
    ops: Dict[str, str] = {}
    for node in (n for n in graph.node if n.name in wanted):
        ops[node.name] = node.op_type
        acts: Dict[str, Any] = {}
        w_diff = w_ref = 0.0
        for name in node.input:
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
            source = dq.input[0]
            q = producers.get(source)
            weight = None
            if source in inits and source in fp32_inits:      # INT8-stored weight: its FP32 original
                weight = fp32_inits[source]
            elif q is not None and q.op_type == "QuantizeLinear" and q.input[0] in inits:
                weight = inits[q.input[0]]
            elif q is not None and q.op_type == "QuantizeLinear":
                acts[q.input[0]] = scale
            if weight is not None:
                w = numpy_helper.to_array(weight).astype(np.float64)
                axis = next((a.i for a in (q or dq).attribute if a.name == "axis"), 1)
                w_diff += float(np.square(w - _fake_quant(w, scale, axis)).sum())
                w_ref += float(np.square(w).sum())
        activations[node.name] = acts
        weight_error[node.name] = w_diff / w_ref if w_ref else 0.0
    return activations, weight_error, ops


def _activation_errors(fp32: Any, activations: Dict[str, Dict[str, Any]], images: np.ndarray, input_name: str,
                       batch_size: int) -> Dict[str, float]:
    """||x - dq(q(x))||^2 / ||x||^2 of each quantized activation, x from one FP32 pass over ``images``."""
    import onnx

    known = {o for n in fp32.graph.node for o in n.output} | {i.name for i in fp32.graph.input}
    tensors = sorted({t for acts in activations.values() for t in acts if t in known})
    existing = {o.name for o in fp32.graph.output}
    for t in tensors:
        if t not in existing:
            fp32.graph.output.append(onnx.ValueInfoProto(name=t))
    session = ort_session(fp32.SerializeToString())
    scale_of = {t: s for acts in activations.values() for t, s in acts.items()}
    diff = {t: 0.0 for t in tensors}
    ref = {t: 0.0 for t in tensors}
    for i in range(0, len(images), batch_size):
        outputs = session.run(tensors, {input_name: images[i:i + batch_size]}) if tensors else []
        for t, x in zip(tensors, outputs):
            x64 = x.astype(np.float64)
            diff[t] += float(np.square(x64 - _fake_quant(x64, scale_of[t])).sum())
            ref[t] += float(np.square(x64).sum())
    return {t: diff[t] / ref[t] for t in tensors if ref[t]}
