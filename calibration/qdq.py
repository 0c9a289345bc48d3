"""Explicit-quantization ONNX through NVIDIA Model Optimizer, with our activation ranges.

modelopt decides *where* Q/DQ goes (TensorRT-friendly placement, per-channel weights, its
``concat_elimination`` scale groups); the ranges come from :mod:`calibration.methods`. They are
handed over through modelopt's TensorRT calibration-cache import, so every method yields the same
kind of graph.

What modelopt 0.47 does with a cache (read from its source and checked here on every run):
it still runs its own ONNX Runtime calibration over ``calibration_data`` and only afterwards
overwrites each activation scale with the cache's value (``replace_scale_values``), per tensor
name; nodes whose inputs the cache does not name are left unquantized. So it is given only
``MINIMAL_IMAGES`` images (its own pass is wasted work), a cache that names every tensor, with one
value per Concat group (a per-tensor overwrite would otherwise break the groups); and after it
returns, every activation scale is compared with ours and re-imported if it differs (none has,
with 0.47). modelopt also writes shape-inference results back into the ONNX file it is given, so
it only ever sees a copy. One placement fix follows (``quantize_maxpool_outputs``): the pooling
branch of the Inception reduction blocks gets a Q/DQ so TensorRT keeps it in INT8.
"""
import contextlib
import io
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from inception_deploy.pipeline import trt_cache
from inception_deploy.pipeline import atomic
from inception_deploy.pipeline.errors import CheckFailed, UserError

MINIMAL_IMAGES = 2
HIGH_PRECISION_DTYPES = ("fp32", "fp16")


@dataclass
class QdqGraph:
    """Facts about a Q/DQ graph that manifests and the budget search need."""

    activation_scales: Dict[str, float]      # tensor -> scale of its activation QuantizeLinear
    quantized_nodes: List[str]               # compute nodes reading a dequantized activation
    weight_quantizers: int                   # weights behind a DequantizeLinear (Q -> DQ or INT8 + DQ)
    qdq_pairs: int                           # QuantizeLinear nodes
    opset: int
    op_counts: Dict[str, int] = field(default_factory=dict)
    int8_weights: int = 0                    # of the weight_quantizers, INT8-stored initializers

    def to_dict(self) -> Dict[str, Any]:
        return {"activation_quantizers": len(self.activation_scales), "weight_quantizers": self.weight_quantizers,
                "int8_weight_initializers": self.int8_weights,
                "quantize_linear_nodes": self.qdq_pairs, "quantized_nodes": len(self.quantized_nodes),
                "opset": self.opset, "op_counts": self.op_counts}


def inspect_qdq(model: Any) -> QdqGraph:
    """Read activation scales, quantized compute nodes and counts from a Q/DQ ModelProto."""
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    scales: Dict[str, float] = {}
    weight_q = q_count = int8_weights = 0
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:       # INT8-stored weight
            weight_q += 1
            int8_weights += inits[node.input[0]].data_type == onnx.TensorProto.INT8
        if node.op_type != "QuantizeLinear":
            continue
        q_count += 1
        if node.input[0] in inits:
            weight_q += 1
            continue
        scales[node.input[0]] = float(np.asarray(numpy_helper.to_array(inits[node.input[1]])).reshape(-1)[0])
    quantized: List[str] = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for name in node.input:
            dq = producers.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] not in inits:
                quantized.append(node.name)
                break
    counts: Dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return QdqGraph(scales, quantized, weight_q, q_count, opset, dict(sorted(counts.items())), int8_weights)


def keep_metadata(parent: Any, model: Any) -> None:
    """Carry the exported model's ``metadata_props`` (preprocessing, labels: what a C++ app reads from
    the ONNX itself) over to a derived model; modelopt writes its outputs without them."""
    have = {p.key for p in model.metadata_props}
    for prop in parent.metadata_props:
        if prop.key not in have:
            entry = model.metadata_props.add()
            entry.key, entry.value = prop.key, prop.value


@contextlib.contextmanager
def _quiet() -> Any:
    """modelopt and ONNX Runtime's calibrator print progress bars (and an NVML error on GPU-less
    hosts); keep them out of the user's terminal, and show the tail only when the call fails."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def modelopt_quantize(onnx_path: str, out_path: str, calibration_images: np.ndarray, input_name: str,
                      cache_path: Optional[str] = None, nodes_to_exclude: Sequence[str] = (),
                      high_precision_dtype: str = "fp32", method: str = "max", int8_weights: bool = True) -> None:
    """One call of ``modelopt.onnx.quantization.quantize`` on the CPU, INT8, writing ``out_path``.

    ``int8_weights``: weights stored as INT8 initializers read by a DequantizeLinear (modelopt's
    ``dq_only``; about 0.26x the FP32 file), instead of FP32 initializers behind a Q -> DQ pair.
    TensorRT builds both the same way; ONNX Runtime fuses the first into integer convolutions."""
    if high_precision_dtype not in HIGH_PRECISION_DTYPES:
        raise UserError(f"high-precision dtype {high_precision_dtype!r}: expected one of "
                        f"{', '.join(HIGH_PRECISION_DTYPES)}")
    from modelopt.onnx.quantization import quantize

    # modelopt 0.47 writes shape-inference results back into the file it is given: hand it a copy
    work = tempfile.mkdtemp(prefix=".modelopt.", dir=os.path.dirname(os.path.abspath(out_path)))
    copy = os.path.join(work, os.path.basename(onnx_path))
    shutil.copyfile(onnx_path, copy)
    with _quiet() as log:
        try:
            quantize(copy, quantize_mode="int8", calibration_data={input_name: calibration_images},
                     calibration_method=method, calibration_cache_path=cache_path, calibration_eps=["cpu"],
                     nodes_to_exclude=list(nodes_to_exclude),   # modelopt extends the list it is given
                     high_precision_dtype=high_precision_dtype, output_path=out_path, log_level="WARNING",
                     dq_only=int8_weights)
        except Exception as e:
            tail = "\n".join(log.getvalue().strip().splitlines()[-5:])
            raise CheckFailed(f"modelopt quantization of {onnx_path} failed: {type(e).__name__}: {e}"
                              + (f" (last output: {tail})" if tail else "")) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if not os.path.isfile(out_path):
        raise CheckFailed(f"modelopt wrote no model for {onnx_path} (no quantizable nodes?)")


@dataclass
class QuantizeResult:
    graph: QdqGraph
    reimported_scales: int         # activation scales modelopt left different from ours (fixed after)
    unscaled_tensors: List[str]    # quantized tensors with no range of ours (kept modelopt's)
    maxpool_outputs_quantized: List[str]
    seconds: float
    bias_corrected: List[str] = field(default_factory=list)   # convolutions whose bias took the weight error


def quantize_with_scales(onnx_path: str, out_path: str, scales: Mapping[str, float], images: np.ndarray,
                         input_name: str, nodes_to_exclude: Sequence[str] = (),
                         high_precision_dtype: str = "fp32", cache_version: str = trt_cache.DEFAULT_VERSION,
                         channel_means: Optional[Mapping[str, np.ndarray]] = None) -> QuantizeResult:
    """Q/DQ model at ``out_path`` (atomically) whose activation scales are ``scales``; with
    ``channel_means`` (FP32 per-channel means of the activations, :class:`calibration.stats.ActivationStats`)
    the convolutions' biases are corrected for their weights' rounding (:func:`correct_bias`)."""
    import onnx

    t0 = time.perf_counter()
    work = tempfile.mkdtemp(prefix=".quantize.", dir=os.path.dirname(os.path.abspath(out_path)))
    try:
        cache_path = os.path.join(work, "scales.cache")
        trt_cache.write_cache(cache_path, scales, cache_version)
        tmp_model = os.path.join(work, "model.int8.onnx")
        modelopt_quantize(onnx_path, tmp_model, images[:MINIMAL_IMAGES], input_name, cache_path,
                          nodes_to_exclude, high_precision_dtype)
        model = onnx.load(tmp_model)
        fp32 = onnx.load(onnx_path)
        keep_metadata(fp32, model)
        reimported, unscaled = import_scales(model, scales)
        pools = quantize_maxpool_outputs(model, scales)
        corrected = correct_bias(model, fp32, channel_means) if channel_means else []
        with atomic.atomic_path(out_path, suffix=".onnx") as tmp:
            onnx.save(model, tmp)
        return QuantizeResult(inspect_qdq(model), reimported, unscaled, pools, time.perf_counter() - t0, corrected)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def correct_bias(model: Any, fp32: Any, channel_means: Mapping[str, np.ndarray]) -> List[str]:
    """Move the mean error that rounding each convolution's weights to INT8 adds to its output into
    its FP32 bias; returns the convolutions changed.

    A Conv computes ``W x + b``; with INT8 weights ``W_q = W + E`` it computes ``W x + E x + b``, and
    ``E x`` does not average out: each output channel is shifted by ``sum_c,k E[o, c, k] * mean(x_c)``
    (bias correction, Nagel et al. 2019, "Data-Free Quantization"). The per-channel means of x come
    from the FP32 calibration pass, W from the FP32 model (by the initializer name modelopt keeps).
    TensorRT keeps a convolution's bias in FP32 and adds it in the INT8 kernel's epilogue, so this
    changes no layer's precision. Padding (zeros at the borders) is ignored, as in the paper."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    fp32_weights = {i.name: i for i in fp32.graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    changed = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[2] not in inits:
            continue
        weight_dq, act_dq = producers.get(node.input[1]), producers.get(node.input[0])
        if weight_dq is None or weight_dq.op_type != "DequantizeLinear":
            continue
        weight_q = producers.get(weight_dq.input[0])     # Q -> DQ over FP32 weights, or none: INT8-stored
        source = weight_q.input[0] if weight_q is not None and weight_q.op_type == "QuantizeLinear" else weight_dq.input[0]
        act_q = producers.get(act_dq.input[0]) if act_dq is not None and act_dq.op_type == "DequantizeLinear" else None
        mean = channel_means.get(act_q.input[0]) if act_q is not None else None
        if source not in fp32_weights or mean is None:
            continue
        w = numpy_helper.to_array(fp32_weights[source]).astype(np.float64)
        if w.ndim != 4 or w.shape[1] != len(mean):      # grouped convolutions: not corrected
            continue
        scale = numpy_helper.to_array(inits[weight_dq.input[1]]).astype(np.float64).reshape(-1, 1, 1, 1)
        if source == weight_dq.input[0]:
            w_int8 = numpy_helper.to_array(inits[source]).astype(np.float64) * scale
        else:
            w_int8 = np.clip(np.round(w / scale), -128, 127) * scale
        shift = ((w_int8 - w).sum(axis=(2, 3)) * mean[None, :]).sum(axis=1)
        bias = numpy_helper.to_array(inits[node.input[2]])
        inits[node.input[2]].CopyFrom(numpy_helper.from_array((bias - shift).astype(bias.dtype), node.input[2]))
        changed.append(node.name)
    return changed


def import_scales(model: Any, scales: Mapping[str, float]) -> "tuple[int, List[str]]":
    """Set each activation QuantizeLinear/DequantizeLinear scale to ours; returns (changed, missing)."""
    from onnx import numpy_helper

    graph = model.graph
    index = {init.name: i for i, init in enumerate(graph.initializer)}
    changed = 0
    missing: List[str] = []
    done = set()
    for node in graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in index:
            continue
        tensor, scale_name = node.input[0], node.input[1]
        if tensor not in scales:
            missing.append(tensor)
            continue
        if scale_name in done:
            continue
        done.add(scale_name)
        current = numpy_helper.to_array(graph.initializer[index[scale_name]])
        want = np.asarray(scales[tensor], dtype=current.dtype).reshape(current.shape)
        if not np.allclose(current.astype(np.float64), want.astype(np.float64), rtol=1e-6, atol=0.0):
            graph.initializer[index[scale_name]].CopyFrom(numpy_helper.from_array(want, scale_name))
            changed += 1
    return changed, missing


def quantize_maxpool_outputs(model: Any, scales: Mapping[str, float]) -> List[str]:
    """Q/DQ after each INT8-fed MaxPool whose output goes on unquantized (the Inception reduction
    blocks' pooling branch into a Concat), with the scale of its Concat group.

    modelopt leaves that branch unquantized, and TensorRT-RTX then dequantizes it, pools in FP32 and
    hands the Concat a Float tensor (seen in the build's ``Layers:`` log). With the Q/DQ the pool
    runs in INT8 and writes the Concat's scale, so every Concat input shares the output's scale
    (what ``concat_elimination`` arranges for the other inputs). Without a range of ours for the
    tensor, the pool's input scale is reused (lossless: max-pooling keeps values on the INT8 grid).
    Returns the MaxPool nodes changed.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    changed: List[str] = []
    nodes: List[Any] = []
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "MaxPool" or len(node.output) != 1:
            continue
        dq = producers.get(node.input[0])
        out = node.output[0]
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] in inits or out in graph_outputs:
            continue
        if any(c.op_type == "QuantizeLinear" for c in consumers.get(out, [])):
            continue
        scale_name, zero_name = dq.input[1], dq.input[2]
        if out in scales:
            scale_name, zero_name = out + "_scale", out + "_zero_point"
            dtype = numpy_helper.to_array(inits[dq.input[1]]).dtype
            zero = numpy_helper.to_array(inits[dq.input[2]])
            graph.initializer.append(numpy_helper.from_array(np.asarray(scales[out], dtype=dtype), scale_name))
            graph.initializer.append(numpy_helper.from_array(np.zeros_like(zero), zero_name))
        q_out, dq_out = out + "_QuantizeLinear_Output", out + "_DequantizeLinear_Output"
        for consumer in consumers.get(out, []):
            for i, name in enumerate(consumer.input):
                if name == out:
                    consumer.input[i] = dq_out
        nodes.append(helper.make_node("QuantizeLinear", [out, scale_name, zero_name], [q_out],
                                      name=out + "_QuantizeLinear"))
        nodes.append(helper.make_node("DequantizeLinear", [q_out, scale_name, zero_name], [dq_out],
                                      name=out + "_DequantizeLinear"))
        changed.append(node.name)
    del graph.node[:]
    graph.node.extend(nodes)
    return changed


def scales_from_amax(amax: Mapping[str, float], floor: float = 1e-8) -> Dict[str, float]:
    """scale = amax / 127; an all-zero tensor gets a tiny positive scale (it quantizes to 0 anyway)."""
    return {name: max(float(value), floor * 127.0) / trt_cache.INT8_MAX for name, value in amax.items()}


class CandidateBuilder:
    """Numbered Q/DQ candidates of one FP32 model in a work folder, each from a set of scales and a list
    of nodes kept in high precision (the budget search and the method comparison build many)."""

    def __init__(self, onnx_path: str, work: str, images: np.ndarray, input_name: str,
                 nodes_to_exclude: Sequence[str] = (), high_precision_dtype: str = "fp32",
                 cache_version: str = trt_cache.DEFAULT_VERSION,
                 channel_means: Optional[Mapping[str, np.ndarray]] = None) -> None:
        self.onnx_path, self.work, self.images, self.input_name = onnx_path, work, images, input_name
        self.nodes_to_exclude, self.high_precision_dtype = list(nodes_to_exclude), high_precision_dtype
        self.cache_version, self.channel_means = cache_version, channel_means
        self.count = 0
        self.last: Optional[QuantizeResult] = None

    def build(self, scales: Mapping[str, float], excluded: Sequence[str] = ()) -> str:
        """A new candidate's path; its :class:`QuantizeResult` is :attr:`last`."""
        self.count += 1
        path = os.path.join(self.work, "candidate-%03d.onnx" % self.count)
        self.last = quantize_with_scales(self.onnx_path, path, scales, self.images, self.input_name,
                                         self.nodes_to_exclude + list(excluded), self.high_precision_dtype,
                                         self.cache_version, self.channel_means)
        return path


def versions() -> Dict[str, str]:
    import onnx
    import onnxruntime

    try:
        from importlib.metadata import version
        modelopt_version = version("nvidia-modelopt")
    except Exception:  # metadata missing in a vendored install
        modelopt_version = "unknown"
    return {"nvidia-modelopt": modelopt_version, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__}
