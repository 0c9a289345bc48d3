"""The verification set a deploy bundle carries, and what the host measures on it before shipping.

``eval/`` holds a seeded, class-balanced choice of labeled images (by default the 1,000 shared val
images ``bench`` measures, so the device's report has the host's image fingerprint), a manifest of
them (relative path, label, sha256) and the FP32 logits the host computed on exactly those files
with the model's own preprocessing (``reference_logits.npy``, rows in manifest order). The device
then compares its engine with the host's FP32 model without carrying the FP32 model.

On the same images the host also measures what DeepStream's nvinfer does instead of the model's
preprocessing (the whole image scaled to the input size without a crop, the model's filter, one std
for all channels: :func:`nvinfer_input`), and how often the two agree on top-1; the bundle README
reports it. Host side: numpy, Pillow, ONNX Runtime (OpenCV for nvinfer's non-antialiased scaling).
"""
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from inception_deploy.engines.deepstream import net_scale
from inception_deploy.pipeline import atomic, documents
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.datasets import ImageFolder, open_image_folder, select
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.hashing import file_sha256

from inception_deploy.engines.eval_files import EVAL_DIR, IMAGES, LOGITS, MANIFEST


@dataclass
class EvalSetResult:
    record: Dict[str, Any]                 # what the bundle manifest says about eval/
    nvinfer: Dict[str, Any]                # the nvinfer-style agreement (or why it was not measured)


def choose(images_root: str, label_names: Sequence[str], count: int, seed: int) -> ImageFolder:
    """The same class-balanced, seeded choice ``bench`` makes (same folder, count, seed: same files)."""
    folder = open_image_folder(images_root, label_names, require_labels=True)
    return folder.subset(select(folder.samples, count, seed))


def copy_images(folder: ImageFolder, dest: str) -> List[Dict[str, Any]]:
    """Copy the chosen files under ``dest/images`` at their paths relative to the source folder."""
    files = []
    for s in folder.samples:
        rel = mf.relpath(s.path, folder.root)
        target = os.path.join(dest, IMAGES, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(s.path, target)
        files.append({"path": rel, "label": s.label, "sha256": file_sha256(target)})
    return files


def _infer_all(runner: Any, x: np.ndarray) -> np.ndarray:
    step = runner.max_batch or len(x)
    return np.concatenate([runner.infer(np.ascontiguousarray(x[i:i + step])) for i in range(0, len(x), step)])


def reference_logits(onnx_path: str, folder: ImageFolder, pre: Any, batch: int = 32) -> Dict[str, np.ndarray]:
    """FP32 logits of every readable image (ONNX Runtime on CPU), keyed by relative path."""
    from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    out: Dict[str, np.ndarray] = {}
    with OnnxRuntimeBackend(onnx_path, providers=["CPUExecutionProvider"]) as runner:
        for b in folder.batches(pre, batch, progress="host FP32 reference"):
            for path, row in zip(b.paths, _infer_all(runner, b.images)):
                out[mf.relpath(path, folder.root)] = row
    return out


def nvinfer_input(rgb: np.ndarray, pre: Dict[str, Any]) -> np.ndarray:
    """What nvinfer feeds the network for an HxWx3 uint8 RGB image: the whole image scaled to the input
    size with the model's filter, not antialiased (as GPU/VIC scaling does; OpenCV's resize), no
    crop, then ``net-scale-factor * (x - offsets)`` with one std for all channels. (3, H, W) float32."""
    import cv2

    h, w = int(pre["input_size"][0]), int(pre["input_size"][1])
    flag = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}[
        str(pre["interpolation"])]
    scaled = cv2.resize(rgb, (w, h), interpolation=flag).astype(np.float32)
    scale = net_scale(pre)
    x = (scaled - np.asarray(scale["offsets"], np.float32)) * np.float32(scale["factor"])
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def nvinfer_parse(values: np.ndarray, threshold: float = 0.0) -> Optional[Dict[str, float]]:
    """nvinfer's default classifier parser on one output row: the class whose value is above
    ``threshold`` and above the running maximum, which starts at 0 (so only positive values count);
    ``None`` when no class qualifies. Mirrors ``parseAttributesFromSoftmaxLayers``."""
    best, index = 0.0, None
    for c, v in enumerate(values.tolist()):
        if v > threshold and v > best:
            best, index = v, c
    return None if index is None else {"index": index, "confidence": best}


def measure_nvinfer(onnx_path: str, folder: ImageFolder, pre: Dict[str, Any], own: Dict[str, np.ndarray],
                    ) -> Dict[str, Any]:
    """Top-1 agreement of nvinfer-style preprocessing with the model's own, and both top-1 accuracies."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return {"skipped": "OpenCV (cv2) is not installed here, and nvinfer's non-antialiased scaling is emulated with "
                           "it (pip install opencv-python-headless)"}
    from PIL import Image

    from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    rels, inputs = [], []
    for s in folder.samples:
        rel = mf.relpath(s.path, folder.root)
        if rel not in own:
            continue
        with Image.open(s.path) as img:
            inputs.append(nvinfer_input(np.asarray(img.convert("RGB")), pre))
        rels.append(rel)
    labels = {mf.relpath(s.path, folder.root): s.label for s in folder.samples}
    with OnnxRuntimeBackend(onnx_path, providers=["CPUExecutionProvider"]) as runner:
        nv = _infer_all(runner, np.stack(inputs))
    own_top1 = np.array([int(np.argmax(own[r])) for r in rels])
    nv_top1 = nv.argmax(axis=1)
    y = np.array([labels[r] for r in rels])
    return {"images": len(rels), "top1_agreement_percent": round(100.0 * float((own_top1 == nv_top1).mean()), 2),
            "top1_model_preprocessing_percent": round(100.0 * float((own_top1 == y).mean()), 2),
            "top1_nvinfer_style_percent": round(100.0 * float((nv_top1 == y).mean()), 2),
            "emulation": "whole image scaled to %sx%s with OpenCV %s (not antialiased), no crop, one std %.4f"
                         % (pre["input_size"][1], pre["input_size"][0], pre["interpolation"],
                            net_scale(pre)["std_avg"])}


def write_eval_set(dest_root: str, onnx_path: str, manifest: mf.Manifest, images_root: str, count: int,
                   seed: int, nvinfer_check: bool = True) -> EvalSetResult:
    """``dest_root/eval/``: images, their manifest, the host's FP32 reference logits (+ the nvinfer check)."""
    if count < 1:
        raise UserError("--eval-count must be at least 1, got %d" % count)
    folder = choose(images_root, manifest.model.label_names, count, seed)
    dest = os.path.join(dest_root, EVAL_DIR)
    files = copy_images(folder, dest)
    own = reference_logits(onnx_path, folder, manifest.preprocessing_obj())
    order = [f["path"] for f in files if f["path"] in own]
    logits = np.stack([own[p] for p in order]).astype(np.float32)
    np.save(os.path.join(dest, LOGITS), logits)
    y = np.array([f["label"] for f in files if f["path"] in own])
    record = {
        "schema": documents.EVAL_SET, "images": IMAGES, "count": len(files), "seed": seed,
        "source": {"root": os.path.abspath(images_root), "count": count, "layout": folder.layout,
                   "fingerprint": folder.fingerprint()},
        "files": files, "unreadable": folder.skipped_report(),
        "reference": {"file": LOGITS, "order": order, "shape": list(logits.shape), "dtype": "float32",
                      "onnx": os.path.basename(onnx_path), "onnx_sha256": manifest.artifact.get("sha256"),
                      "runner": "onnxruntime-cpu", "preprocessing": "the model's own (manifest)",
                      "top1_percent": round(100.0 * float((logits.argmax(1) == y).mean()), 2)},
    }
    atomic.write_json(os.path.join(dest, MANIFEST), record)
    nv = measure_nvinfer(onnx_path, folder, manifest.preprocessing, own) if nvinfer_check else {
        "skipped": "not asked for (--no-deepstream-check)"}
    summary = {k: v for k, v in record.items() if k not in ("files",)}
    summary["reference"] = {k: v for k, v in record["reference"].items() if k != "order"}
    return EvalSetResult(record=summary, nvinfer=nv)
