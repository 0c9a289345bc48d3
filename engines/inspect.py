"""``inception-deploy inspect FILE``: what an ONNX model or a TensorRT engine is, like ``polygraphy inspect``.

- ONNX: inputs and outputs (Polygraphy's ``get_input_metadata``/``get_output_metadata``: names, dtypes,
  shapes), opsets, node counts by type, initializers by dtype, the Q/DQ summary (quantized tensors,
  per-channel or per-tensor scales, zero-point types), and the manifest chain back to the weights;
- engine: its manifest (TensorRT flavour and version, target, precision, network mode, batch profile,
  DLA, output, the layer summary from the build log) and the chain; then TensorRT's EngineInspector
  per-layer information where this host can deserialize the plan, else the reason it cannot.

Host side (onnx + Polygraphy for ONNX; TensorRT for the inspector).
"""
import json
import os
from collections import Counter
from typing import Any, Dict, List

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import Unsupported, UserError


def manifest_chain(path: str) -> List[Dict[str, Any]]:
    """The artifact, its parent, its parent's parent ... as far as the files are here."""
    chain: List[Dict[str, Any]] = []
    seen = set()
    while path and os.path.abspath(path) not in seen:
        seen.add(os.path.abspath(path))
        try:
            m = mf.read(path)
            state = "sha256 matches its manifest"
        except UserError as e:
            try:
                m = mf.read(path, verify=False)
            except UserError:
                chain.append({"file": path, "state": str(e)})
                break
            state = "CHANGED: %s" % e
        chain.append({"file": os.path.relpath(path), "kind": m.kind, "sha256": m.artifact.get("sha256"),
                      "state": state, "summary": m.stage.get("summary")})
        parent = mf.parent_path(m, path)
        if parent is None and m.parent:
            chain.append({"file": m.parent.get("file"), "kind": m.parent.get("kind"), "state": "not here"})
        path = parent or ""
    return chain


def _qdq(model: Any) -> Dict[str, Any]:
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    per_channel = per_tensor = 0
    zero_points: Counter = Counter()
    for node in q:
        scale = inits.get(node.input[1]) if len(node.input) > 1 else None
        if scale is not None:
            if numpy_helper.to_array(scale).size > 1:
                per_channel += 1
            else:
                per_tensor += 1
        if len(node.input) > 2 and node.input[2] in inits:
            zero_points[str(numpy_helper.to_array(inits[node.input[2]]).dtype)] += 1
    weights = sum(1 for node in q if node.input[0] in inits)
    return {"quantize": len(q), "dequantize": len(dq), "quantized_weights": weights,
            "quantized_activations": len(q) - weights, "per_channel_scales": per_channel,
            "per_tensor_scales": per_tensor, "zero_point_types": dict(zero_points)}


def inspect_onnx(path: str) -> Dict[str, Any]:
    import onnx
    from onnx import helper
    from polygraphy.backend.onnx import util as pg

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise UserError("%s is not a readable ONNX model (%s)" % (path, str(e).splitlines()[0])) from None

    def meta(tensors: Any) -> List[Dict[str, Any]]:
        return [{"name": name, "dtype": str(m.dtype), "shape": [d if isinstance(d, int) else str(d) for d in m.shape]}
                for name, m in tensors.items()]

    by_dtype: Counter = Counter()
    for init in model.graph.initializer:
        by_dtype[helper.tensor_dtype_to_np_dtype(init.data_type).name] += 1
    return {"file": path, "type": "onnx", "bytes": os.path.getsize(path), "ir_version": model.ir_version,
            "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
            "producer": "%s %s" % (model.producer_name, model.producer_version),
            "inputs": meta(pg.get_input_metadata(model.graph)), "outputs": meta(pg.get_output_metadata(model.graph)),
            "nodes": len(model.graph.node), "nodes_by_type": dict(Counter(n.op_type for n in model.graph.node)
                                                                  .most_common()),
            "initializers_by_dtype": dict(by_dtype), "qdq": _qdq(model),
            "metadata": {p.key: (p.value[:80] + "...") if len(p.value) > 80 else p.value
                         for p in model.metadata_props},
            "chain": manifest_chain(path) if os.path.isfile(mf.sidecar(path)) else []}


def engine_inspector(path: str, manifest: mf.Manifest) -> Dict[str, Any]:
    """TensorRT's per-layer information for the plan, or why it is not available here."""
    from inception_deploy.engines.trt_api import import_tensorrt

    flavour = (manifest.stage.get("tensorrt") or {}).get("flavour")
    try:
        api = import_tensorrt(prefer=flavour, only=bool(flavour))
    except Unsupported as e:
        return {"available": False, "reason": str(e).split(";")[0]}
    from inception_deploy.engines.trt_hooks import make_logger

    trt = api.module
    logger = make_logger(api, echo=lambda text: None, echo_warnings=False)   # keep stdout for the record
    runtime = trt.Runtime(logger)
    with open(path, "rb") as f:
        try:
            engine = runtime.deserialize_cuda_engine(f.read())
        except Exception as e:  # TensorRT raises on hosts without a driver
            engine, error = None, str(e).splitlines()[0]
        else:
            error = (logger.errors() or ["deserialize_cuda_engine returned nothing"])[-1]
    if engine is None:
        return {"available": False, "reason": "%s cannot deserialize the plan here (%s): the EngineInspector needs "
                                              "the GPU it was built for; the layer summary above comes from the "
                                              "build log" % (api.label, error)}
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers = info.get("Layers", [])
    return {"available": True, "layers": len(layers),
            "layer_types": dict(Counter(str(l.get("LayerType", "?")) if isinstance(l, dict) else "?"
                                        for l in layers).most_common())}


def inspect_engine(path: str) -> Dict[str, Any]:
    m = mf.read(path, expect_kind="engine")
    s = m.stage
    return {"file": path, "type": "engine", "bytes": os.path.getsize(path), "summary": s.get("summary"),
            "tensorrt": s.get("tensorrt", {}).get("label"), "target": s.get("target"), "precision": s.get("precision"),
            "network": s.get("network"), "batch_profile": s.get("batch_profile"), "dla": s.get("dla"),
            "output": s.get("output") or {"softmax": False}, "io": m.io,
            "layers": {k: v for k, v in (s.get("layers") or {}).items() if k not in ("reformat_names",)},
            "chain": manifest_chain(path), "inspector": engine_inspector(path, m)}


def inspect(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise UserError("file not found: %s (inspect takes an .onnx file or an engine)" % path)
    from inception_deploy.runtime.backends import artifact_type

    return inspect_engine(path) if artifact_type(path) == "engine" else inspect_onnx(path)


def render(record: Dict[str, Any]) -> str:
    """The record as indented ``key: value`` lines (nested records one level deeper)."""
    lines: List[str] = []

    def walk(value: Any, indent: int, key: str) -> None:
        pad = "  " * indent
        if isinstance(value, dict) and value:
            lines.append("%s%s:" % (pad, key))
            for k, v in value.items():
                walk(v, indent + 1, str(k))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append("%s%s:" % (pad, key))
            for item in value:
                lines.append("%s  - %s" % (pad, ", ".join("%s=%s" % kv for kv in item.items() if kv[1] is not None)))
        else:
            lines.append("%s%s: %s" % (pad, key, value))

    for k, v in record.items():
        walk(v, 0, k)
    return "\n".join(lines)
