"""Which images calibrate and which evaluate: seeded, class-balanced, never the same files.

Calibrating on the evaluation images would make every drift figure optimistic, so a calibration
set that shares a file (same path, or same content under another path) with the evaluation set
is refused. The evaluation set itself is split, seeded, into a *choose* part (where the accuracy
budget search decides) and a *report* part (where its result is measured), so the reported drift
is not the one the search optimised.
"""
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from inception_deploy.pipeline.datasets import FINGERPRINT_METHOD, UNLABELED, ImageFolder, Sample, open_image_folder, select
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.preprocess import Preprocessing

MIN_RECOMMENDED_IMAGES = 300


@dataclass
class ImageSet:
    """A chosen subset of an image folder, with each file's sha256 (the manifest's file list)."""

    folder: ImageFolder
    requested: int
    seed: int
    sha256: List[str]
    warnings: List[str] = field(default_factory=list)

    @property
    def samples(self) -> List[Sample]:
        return self.folder.samples

    def __len__(self) -> int:
        return len(self.folder.samples)

    def file_list(self) -> List[Dict[str, object]]:
        return [{"path": os.path.relpath(s.path, self.folder.root), "sha256": d, "label": s.label}
                for s, d in zip(self.samples, self.sha256)]

    def record(self) -> Dict[str, object]:
        return {"root": os.path.abspath(self.folder.root), "layout": self.folder.layout, "requested": self.requested,
                "images": len(self), "seed": self.seed, "fingerprint": self.folder.fingerprint(),
                "fingerprint_method": FINGERPRINT_METHOD, "skipped": self.folder.skipped_report()}


def choose_images(root: str, label_names: Optional[Sequence[str]], count: Optional[int], seed: int,
                  require_labels: bool = False, what: str = "images") -> ImageSet:
    """``count`` images (all when None) from ``root``, class-balanced and seeded, with their sha256s.

    Files that do not decode are left out, counted and said on the terminal: every figure and
    manifest counts only the images that were really used."""
    folder = open_image_folder(root, label_names, require_labels=require_labels)
    if count is not None and count < 1:
        raise UserError(f"image count must be at least 1, got {count}")
    chosen = balanced_select(folder.samples, count if count is not None else len(folder), seed)
    subset = folder.subset(chosen).readable()
    warnings = []
    if subset.skipped:
        path, reason = subset.skipped[0]
        message = (f"{len(subset.skipped)} of the {len(chosen)} chosen {what} are unreadable and left out "
                   f"(e.g. {path}: {reason}); using {len(subset)}")
        warnings.append(message)
        print(f"warning: {message}", file=sys.stderr)
    if not subset.samples:
        raise UserError(f"none of the {len(chosen)} chosen {what} in {root} is a readable image")
    return ImageSet(subset, count if count is not None else len(folder), seed, subset.content_sha256(), warnings)


def balanced_select(samples: Sequence[Sample], count: int, seed: int) -> List[Sample]:
    """:func:`pipeline.datasets.select`, balanced over sub-folders when the images carry no label
    the model knows (an unlabeled class-per-folder calibration set is still class-balanced)."""
    if any(s.label != UNLABELED for s in samples):
        return select(samples, count, seed)
    folders = {d: i for i, d in enumerate(sorted({os.path.dirname(s.path) for s in samples}))}
    proxies = [Sample(s.path, folders[os.path.dirname(s.path)]) for s in samples]
    picked = {p.path for p in select(proxies, count, seed)}
    return sorted((s for s in samples if s.path in picked), key=lambda s: s.path)


def choose_calibration_images(root: str, label_names: Optional[Sequence[str]], count: int, seed: int,
                              batch_size: int, eval_root: Optional[str] = None) -> ImageSet:
    """The calibration set; refuses overlap with ``eval_root``, warns below 300, fails below a batch."""
    images = choose_images(root, label_names, count, seed, what="calibration images")
    if eval_root:
        refuse_overlap(images, eval_root)
    if len(images) < batch_size:
        raise UserError(f"only {len(images)} calibration images in {root} (asked for {count}), fewer than the "
                        f"batch size {batch_size}; give a folder with more images or a smaller --batch-size")
    if len(images) < MIN_RECOMMENDED_IMAGES:
        message = (f"calibrating on {len(images)} images (< {MIN_RECOMMENDED_IMAGES}): activation ranges from so few "
                   "images are noisy; 500 class-balanced images is the default")
        images.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr)
    return images


def refuse_overlap(calib: ImageSet, eval_root: str) -> None:
    """UserError if a calibration file is also an evaluation file (by real path or by content)."""
    if not os.path.isdir(eval_root):
        raise UserError(f"evaluation folder not found: {eval_root}")
    calib_paths = {os.path.realpath(s.path) for s in calib.samples}
    calib_digests = set(calib.sha256)
    eval_folder = open_image_folder(eval_root)
    same: List[str] = []
    for sample, digest in zip(eval_folder.samples, eval_folder.content_sha256(progress="evaluation image hashes")):
        real = os.path.realpath(sample.path)
        if real in calib_paths or (os.path.getsize(real) > 0 and digest in calib_digests):
            same.append(sample.path)
    if same:
        raise UserError(f"{len(same)} of the {len(calib)} calibration images are also evaluation images "
                        f"(e.g. {same[0]}); calibrate on a separate folder (the shared calib/ split, not val/)")


def split_eval(count: int, seed: int, choose_fraction: float = 0.5) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(count)`` into (choose, report) index arrays."""
    order = list(range(count))
    random.Random(seed).shuffle(order)
    cut = int(round(count * choose_fraction))
    return np.array(sorted(order[:cut]), dtype=np.int64), np.array(sorted(order[cut:]), dtype=np.int64)


def load_arrays(images: ImageSet, preprocessing: Preprocessing, batch_size: int,
                label: Optional[str] = None) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """Decode and preprocess every image once: (N,3,H,W) float32, labels, paths (unreadable ones left out)."""
    xs, ys, paths = [], [], []
    for batch in images.folder.batches(preprocessing, batch_size, progress=label):
        xs.append(batch.images)
        ys.append(batch.labels)
        paths.extend(batch.paths)
    if not xs:
        raise UserError(f"no readable images in {images.folder.root}")
    return np.concatenate(xs), np.concatenate(ys), paths
