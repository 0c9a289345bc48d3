"""FP16 ONNX through modelopt's AutoCast, I/O kept FP32, with the nodes kept in FP32 explained.

AutoCast keeps a node in FP32 when its inputs or outputs exceed ``data_max`` on reference data
(default 512: FP16 holds 65504, but products and sums of large values overflow first). The
reference data must be real images: without it AutoCast feeds uniform noise in [-1, 1], which says
nothing about the activation ranges of photographs. The report names every node left in FP32 with
the largest |activation| seen on the calibration images (from the same histogram pass as INT8),
and lists tensors that would overflow FP16 outright.
"""
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from inception_deploy.calibration.qdq import _quiet, keep_metadata
from inception_deploy.calibration.stats import TensorHistogram
from inception_deploy.pipeline import atomic
from inception_deploy.pipeline.errors import CheckFailed

FP16_MAX = 65504.0
DATA_MAX = 512.0


@dataclass
class Fp16Result:
    nodes: int
    fp16_nodes: int
    fp32_nodes: List[Dict[str, Any]]          # node, op, reason (largest |value| seen)
    overflowing_tensors: List[Dict[str, Any]]  # tensors whose |max| exceeds FP16's range
    keep_io_types: bool
    data_max: float
    seconds: float
    reference_images: int

    def to_dict(self) -> Dict[str, Any]:
        return {"nodes": self.nodes, "fp16_nodes": self.fp16_nodes, "fp32_nodes": self.fp32_nodes,
                "overflowing_tensors": self.overflowing_tensors, "keep_io_types": self.keep_io_types,
                "data_max": self.data_max, "seconds": round(self.seconds, 2),
                "reference_images": self.reference_images}


def convert(onnx_path: str, out_path: str, reference: np.ndarray, input_name: str,
            hists: Optional[Mapping[str, TensorHistogram]] = None, keep_io_types: bool = True,
            data_max: float = DATA_MAX) -> Fp16Result:
    """Write the FP16 model to ``out_path`` (atomically) and report what stayed FP32 and why."""
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    t0 = time.perf_counter()
    original = onnx.load(onnx_path)
    work = tempfile.mkdtemp(prefix=".fp16.", dir=os.path.dirname(os.path.abspath(out_path)))
    try:
        ref_path = os.path.join(work, "reference.npz")
        np.savez(ref_path, **{input_name: reference})
        copy = os.path.join(work, "model.onnx")   # never let a tool write into the parent artifact
        shutil.copyfile(onnx_path, copy)
        with _quiet() as log:
            try:
                model = convert_to_mixed_precision(copy, low_precision_type="fp16", keep_io_types=keep_io_types,
                                                   calibration_data=ref_path, providers=["cpu"], data_max=data_max)
            except Exception as e:
                tail = "\n".join(log.getvalue().strip().splitlines()[-5:])
                raise CheckFailed(f"FP16 conversion of {onnx_path} failed: {type(e).__name__}: {e}"
                                  + (f" (last output: {tail})" if tail else "")) from None
        keep_metadata(original, model)
        with atomic.atomic_path(out_path, suffix=".onnx") as tmp:
            onnx.save(model, tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    fp32_nodes = _nodes_left_fp32(original, model, hists or {}, data_max)
    overflow = [{"tensor": name, "max_abs": h.amax} for name, h in sorted((hists or {}).items())
                if h.amax > FP16_MAX]
    compute = [n for n in original.graph.node if n.op_type not in ("Constant", "Identity")]
    return Fp16Result(nodes=len(compute), fp16_nodes=len(compute) - len(fp32_nodes), fp32_nodes=fp32_nodes,
                      overflowing_tensors=overflow, keep_io_types=keep_io_types, data_max=data_max,
                      seconds=time.perf_counter() - t0, reference_images=int(len(reference)))


def _nodes_left_fp32(original: Any, converted: Any, hists: Mapping[str, TensorHistogram],
                     data_max: float) -> List[Dict[str, Any]]:
    """Nodes of the original graph whose outputs are still float32 in the converted graph."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(converted)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info)
             + list(inferred.graph.output)}
    outputs = {o.name for o in converted.graph.output}
    converted_nodes = {n.name: n for n in converted.graph.node}
    left: List[Dict[str, Any]] = []
    for node in original.graph.node:
        if node.op_type in ("Constant", "Identity") or node.name not in converted_nodes:
            continue
        out = converted_nodes[node.name].output[0]
        if out in outputs:
            # keep_io_types: the graph output stays FP32 through a Cast after the node
            continue
        if types.get(out) == onnx.TensorProto.FLOAT:
            seen = [hists[t].amax for t in list(node.input) + list(node.output) if t in hists]
            worst = max(seen) if seen else None
            reason = (f"|activation| up to {worst:.4g} > data_max {data_max:g}" if worst is not None and worst > data_max
                      else "kept FP32 by AutoCast's rules")
            left.append({"node": node.name, "op": node.op_type, "max_abs": worst, "reason": reason})
    return left
