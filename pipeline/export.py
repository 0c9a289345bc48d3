"""Stage 1, export: PyTorch (timm) -> ONNX with a built-in parity check and a manifest.

The graph has one input ``input`` (N, 3, H, W) float32 with a dynamic batch and one output
``logits``. It is checked (``onnx.checker``, shape inference), run in ONNX Runtime on real
images with the model's own preprocessing and compared with PyTorch; the files appear at the
output path only if every check passes, published together under the folder's run lock
(:mod:`pipeline.publish`).
"""
import json
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from inception_deploy.pipeline import documents
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline import publish
from inception_deploy.pipeline.datasets import open_image_folder, select
from inception_deploy.pipeline.errors import CheckFailed, UserError
from inception_deploy.pipeline.models.sources import LoadedModel
from inception_deploy.pipeline.onnx_io import INPUT_NAME, OUTPUT_NAME, ort_session

DEFAULT_OPSET = 17
TWO_GB = 2 ** 31


@dataclass
class ParityTolerance:
    """FP32 ONNX Runtime vs PyTorch: |ort - torch| <= atol + rtol * max|torch logits|, top-1 agreement."""

    atol: float = 1e-4
    rtol: float = 1e-3
    min_top1_agreement: float = 0.99


@dataclass
class Parity:
    images: int
    max_abs_error: float
    mean_abs_error: float
    max_rel_error: float          # max |d| / max |reference|
    top1_agreement: float
    tolerance: Dict[str, float]
    passed: bool


class _LogitsOnly(torch.nn.Module):
    """Makes sure the exported graph has exactly one output, whatever the model returns."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out


def _inline_identity_initializers(model: Any) -> int:
    """Drop ``Identity(initializer)`` nodes (TorchScript exporter's shared weights) in place.

    Quantizers expect conv/gemm weights and biases to be initializers, not Identity outputs.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename: Dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    if not rename:
        return 0
    del graph.node[:]
    graph.node.extend(keep)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    return len(rename)


def opset_range(exporter: str) -> "tuple[int, int]":
    """The opsets this torch's exporter writes (TorchScript: 7-20 on torch 2.x; dynamo: up to ONNX_MAX_OPSET)."""
    from torch.onnx import _constants

    low = int(getattr(_constants, "ONNX_MIN_OPSET", 7))
    high = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", None) if exporter == "torchscript" else None
    return low, int(high or getattr(_constants, "ONNX_MAX_OPSET", 20))


def check_opset(opset: int, exporter: str) -> None:
    low, high = opset_range(exporter)
    if not low <= opset <= high:
        raise UserError(f"--opset {opset} is not one the {exporter} exporter of torch {torch.__version__} writes "
                        f"({low}-{high}); use 17 (JetPack 5's TensorRT 8.5 parser reads up to 17) or another "
                        "opset in that range")


def export_onnx(model: torch.nn.Module, path: str, input_shape: List[int], opset: int, exporter: str) -> Dict[str, Any]:
    """Write ``model`` to ``path``; returns graph facts (nodes, opset, identity nodes removed).

    An exporter failure is one line (its first), not the exporter's full graph dump; set
    INCEPTION_DEPLOY_DEBUG=1 for the whole message."""
    try:
        _torch_export(model, path, input_shape, opset, exporter)
    except Exception as e:
        if os.environ.get("INCEPTION_DEPLOY_DEBUG"):
            raise
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UserError(f"torch.onnx.export ({exporter}, opset {opset}) failed: {type(e).__name__}: {first[:300]} "
                        "(INCEPTION_DEPLOY_DEBUG=1 shows the whole message)") from None
    return _tidy_graph(path)


def _torch_export(model: torch.nn.Module, path: str, input_shape: List[int], opset: int, exporter: str) -> None:
    dummy = torch.zeros([2] + list(input_shape), dtype=torch.float32)
    wrapped = _LogitsOnly(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(wrapped, (dummy,), path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamo=True, external_data=False,
                              dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=1024)}})
        else:
            torch.onnx.export(wrapped, (dummy,), path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamo=False, do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})


def _tidy_graph(path: str) -> Dict[str, Any]:
    """Inline Identity initializers and name the batch dimension; returns graph facts."""
    import onnx

    proto = onnx.load(path)
    removed = _inline_identity_initializers(proto)
    for tensor in (proto.graph.input[0], proto.graph.output[0]):  # name the batch dimension
        dim = tensor.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    onnx.save(proto, path)
    return {"nodes": len(proto.graph.node), "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
            "identity_initializers_inlined": removed}


def check_graph(path: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(path, full_check=True)
    except Exception as e:
        raise CheckFailed(f"exported graph fails onnx.checker: {str(e).splitlines()[0]}") from None


def add_metadata(path: str, meta: Dict[str, str]) -> None:
    import onnx

    proto = onnx.load(path)
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "inception-deploy"
    proto.producer_version = documents.VERSION
    onnx.save(proto, path)


def parity_check(loaded: LoadedModel, onnx_path: str, images_dir: str, count: int, seed: int,
                 tolerance: ParityTolerance, batch_size: int = 16) -> Parity:
    """Compare ONNX Runtime with PyTorch on ``count`` real images (the model's preprocessing)."""
    ds = open_image_folder(images_dir)
    ds = ds.subset(select(ds.samples, count, seed))
    sess = ort_session(onnx_path)
    max_abs = sum_abs = ref_max = 0.0
    n = agree = elems = 0
    for batch in ds.batches(loaded.preprocessing, batch_size, progress="parity (PyTorch vs ONNX Runtime)"):
        with torch.no_grad():
            ref = loaded.module(torch.from_numpy(batch.images))
            ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).numpy()
        got = sess.run([OUTPUT_NAME], {INPUT_NAME: batch.images})[0]
        d = np.abs(got.astype(np.float64) - ref)
        max_abs = max(max_abs, float(d.max()))
        sum_abs += float(d.sum())
        elems += d.size
        ref_max = max(ref_max, float(np.abs(ref).max()))
        agree += int((got.argmax(1) == ref.argmax(1)).sum())
        n += len(ref)
    if n == 0:
        raise UserError(f"no readable images for the parity check in {images_dir}")
    rel = max_abs / ref_max if ref_max > 0 else 0.0
    passed = max_abs <= tolerance.atol + tolerance.rtol * ref_max and agree / n >= tolerance.min_top1_agreement
    return Parity(images=n, max_abs_error=max_abs, mean_abs_error=sum_abs / max(elems, 1), max_rel_error=rel,
                  top1_agreement=agree / n, tolerance=asdict(tolerance), passed=passed)


def versions() -> Dict[str, str]:
    import onnx
    import onnxruntime
    import timm

    return {"torch": torch.__version__, "timm": timm.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def run_export(loaded: LoadedModel, out_dir: str, parity_images: str, opset: int = DEFAULT_OPSET,
               exporter: str = "torchscript", parity_count: int = 64, seed: int = 0,
               tolerance: Optional[ParityTolerance] = None, frame_inputs: Sequence[str] = ()) -> mf.Manifest:
    """Export ``loaded`` to ``<out_dir>/model.onnx`` + ``model.onnx.json``; nothing is left on failure.

    ``frame_inputs`` (e.g. ``["1920x1080"]``) are recorded in the manifest: the frame-input variants
    the export (:mod:`pipeline.frame_variant`) and calibrate stages then write beside each model.
    """
    check_opset(opset, exporter)
    with publish.RunLock(out_dir, "export"):
        return _export_locked(loaded, out_dir, parity_images, opset, exporter, parity_count, seed,
                              tolerance or ParityTolerance(), frame_inputs)


def _export_locked(loaded: LoadedModel, out_dir: str, parity_images: str, opset: int, exporter: str,
                   parity_count: int, seed: int, tolerance: ParityTolerance,
                   frame_inputs: Sequence[str]) -> mf.Manifest:
    t0 = time.perf_counter()
    pre = loaded.preprocessing
    input_shape = [3, pre.input_size[0], pre.input_size[1]]
    final = os.path.join(out_dir, "model.onnx")
    work = publish.temp_dir(out_dir, "export")
    try:
        tmp = os.path.join(work, "model.onnx")
        t_exp = time.perf_counter()
        graph = export_onnx(loaded.module, tmp, input_shape, opset, exporter)
        export_s = time.perf_counter() - t_exp
        if os.path.getsize(tmp) >= TWO_GB:
            raise UserError("model is over 2 GB: single-file ONNX cannot hold it; external data is not supported yet")
        labels_meta = {"label_names": loaded.label_names, "label_descriptions": loaded.label_descriptions}
        add_metadata(tmp, {"inception_deploy.preprocessing": json.dumps(pre.to_dict()),
                           "inception_deploy.labels": json.dumps(labels_meta),
                           "inception_deploy.model": loaded.name,
                           "inception_deploy.weights_sha256": loaded.weights_sha256})
        check_graph(tmp)
        t_par = time.perf_counter()
        parity = parity_check(loaded, tmp, parity_images, parity_count, seed, tolerance)
        parity_s = time.perf_counter() - t_par
        if not parity.passed:
            raise CheckFailed(
                f"parity check failed on {parity.images} images: max abs error {parity.max_abs_error:.3g} "
                f"(limit {tolerance.atol} + {tolerance.rtol} x max|logit|), top-1 agreement "
                f"{100 * parity.top1_agreement:.2f} % (limit {100 * tolerance.min_top1_agreement:.0f} %); "
                "nothing was written")
        manifest = mf.Manifest(
            kind="onnx", artifact={},
            model=mf.ModelRecord(name=loaded.name, architecture=loaded.architecture, source=loaded.source,
                                 weights_sha256=loaded.weights_sha256, num_classes=loaded.num_classes,
                                 label_names=loaded.label_names, label_descriptions=loaded.label_descriptions),
            preprocessing=pre.to_dict(),
            io={"input": {"name": INPUT_NAME, "shape": ["batch"] + input_shape, "dtype": "float32"},
                "output": {"name": OUTPUT_NAME, "shape": ["batch", loaded.num_classes], "dtype": "float32"}},
            stage={"name": "export", "exporter": exporter, "opset": graph["opset"], "nodes": graph["nodes"],
                   "identity_initializers_inlined": graph["identity_initializers_inlined"],
                   "weights_file_sha256": loaded.weights_file_sha256, "pretrained_cfg": _jsonable(loaded.pretrained_cfg),
                   "parity": asdict(parity), "parity_images": os.path.abspath(parity_images),
                   "frame_inputs": list(frame_inputs),
                   "notes": loaded.notes, "versions": versions(),
                   "timings_s": {"export": round(export_s, 2), "parity": round(parity_s, 2),
                                 "total": round(time.perf_counter() - t0, 2)}})
        manifest.stage["summary"] = (
            f"{loaded.name}, opset {graph['opset']}, parity on {parity.images} images: max abs error "
            f"{parity.max_abs_error:.1e}, top-1 agreement {100 * parity.top1_agreement:.1f} %")
        with publish.Publication(out_dir) as pub:
            pub.add_artifact(final, tmp, manifest)
            pub.last(final)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else str(obj)
