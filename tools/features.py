"""Pooled features of an image folder through a backbone ONNX in ONNX Runtime, cached on disk.

Training a classifier head on a frozen backbone needs the backbone's features of every training
image once; ONNX Runtime computes them faster than PyTorch on the CPU (Inception-v3 at 299x299:
46 vs 69 ms an image on 2 cores). The cache key covers the backbone, the preprocessing, the image
list and contents, and the flip flag, so a stale cache can never be read.
"""
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import List

import numpy as np

from inception_deploy.pipeline import atomic
from inception_deploy.pipeline.datasets import ImageFolder
from inception_deploy.pipeline.preprocess import Preprocessing


@dataclass
class Features:
    x: np.ndarray          # (N, C) float32
    y: np.ndarray          # (N,) int64
    paths: List[str]
    seconds: float
    cached: bool


def cache_key(backbone_sha256: str, pre: Preprocessing, folder: ImageFolder, flip: bool) -> str:
    """What the features depend on: the backbone, the preprocessing, each image's label and contents."""
    h = hashlib.sha256(json.dumps({"backbone": backbone_sha256, "pre": pre.to_dict(), "flip": flip},
                                  sort_keys=True).encode())
    for s, digest in zip(folder.samples, folder.content_sha256()):
        h.update(f"{s.label}\t{digest}\n".encode())
    return h.hexdigest()


def extract(onnx_path: str, backbone_sha256: str, folder: ImageFolder, pre: Preprocessing, cache_dir: str,
            label: str, flip: bool = False, threads: int = 0, batch_size: int = 50) -> Features:
    """Features of ``folder``'s samples (``flip``: of their mirror images), from the cache if there."""
    key = cache_key(backbone_sha256, pre, folder, flip)
    path = os.path.join(cache_dir, f"features-{label}-{key[:16]}.npz")
    if os.path.isfile(path):
        with np.load(path, allow_pickle=False) as z:
            return Features(z["x"], z["y"], [str(p) for p in z["paths"]], float(z["seconds"]), True)
    from inception_deploy.pipeline.onnx_io import ort_session

    session = ort_session(onnx_path, threads)
    input_name = session.get_inputs()[0].name
    t0 = time.perf_counter()
    xs, ys, paths = [], [], []
    for batch in folder.batches(pre, batch_size, progress=f"{label} features{' (mirrored)' if flip else ''}"):
        images = batch.images[:, :, :, ::-1].copy() if flip else batch.images
        xs.append(session.run(None, {input_name: images})[0].reshape(len(images), -1))
        ys.append(batch.labels)
        paths.extend(batch.paths)
    if folder.skipped:
        print(f"{label}: {len(folder.skipped)} unreadable images skipped", file=sys.stderr)
    feats = Features(np.concatenate(xs).astype(np.float32), np.concatenate(ys), paths,
                     time.perf_counter() - t0, False)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic.atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, x=feats.x, y=feats.y, paths=np.array(paths), seconds=feats.seconds)
    return feats
