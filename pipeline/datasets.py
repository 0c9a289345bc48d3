"""The labeled image folder reader every stage uses (device-side: numpy + PIL, no torch).

Layouts, detected in this order:
- ``labels.txt`` beside the images (``<file> <class index>`` lines; images in the folder or its
  ``images/`` subfolder), as the shared ImageNet val sample;
- class-per-folder: ``root/<class id>/*.JPEG`` where the folder name is a label name (a WordNet
  id); the index comes from the model's ``label_names``, never from sorted folder order;
- flat: ``root/<wnid>_<anything>.JPEG`` (label parsed from the prefix), else unlabeled (-1).

Unreadable or truncated images are counted and reported (``skipped``) or, with ``strict``,
fail the run with the file named; a bad file never crashes a run halfway.
"""
import hashlib
import os
import random
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from pipeline.errors import UserError
from pipeline.hashing import file_sha256  # noqa: F401  (re-exported: older imports keep working)
from pipeline.preprocess import Preprocessing, stack

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")
UNLABELED = -1


@dataclass(frozen=True)
class Sample:
    path: str
    label: int          # class index in the model's label_names, or UNLABELED


@dataclass
class Batch:
    images: np.ndarray  # (N, 3, H, W) float32
    labels: np.ndarray  # (N,) int64, UNLABELED where unknown
    paths: List[str]


@dataclass
class ImageFolder:
    """A list of samples plus the files that could not be read."""

    root: str
    samples: List[Sample]
    layout: str
    skipped: List[Tuple[str, str]] = field(default_factory=list)   # (path, reason)
    strict: bool = False

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labeled(self) -> bool:
        return bool(self.samples) and all(s.label != UNLABELED for s in self.samples)

    def subset(self, samples: Sequence[Sample]) -> "ImageFolder":
        return ImageFolder(self.root, list(samples), self.layout, [], self.strict)

    def fingerprint(self) -> str:
        """sha256 over the sorted relative paths and labels: identifies the image *set*."""
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.path):
            h.update(("%s\t%d\n" % (os.path.relpath(s.path, self.root), s.label)).encode())
        return h.hexdigest()

    def load(self, sample: Sample) -> Optional[object]:
        """The decoded PIL image, or None (recorded in ``skipped``) if the file is unreadable."""
        from PIL import Image

        try:
            with Image.open(sample.path) as img:
                img.load()
                return img.copy()
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            if self.strict:
                raise UserError(f"unreadable image {sample.path}: {e} (remove it, or run without --strict "
                                "to skip and count such files)") from None
            self.skipped.append((sample.path, str(e).splitlines()[0] if str(e) else type(e).__name__))
            return None

    def batches(self, preprocessing: Preprocessing, batch_size: int = 64,
                progress: Optional[str] = None) -> Iterator[Batch]:
        """Decode and preprocess in order; skipped files are left out of the batches."""
        from pipeline.progress import Progress

        bar = Progress(len(self.samples), progress, unit="img") if progress else None
        images: List[np.ndarray] = []
        labels: List[int] = []
        paths: List[str] = []
        for sample in self.samples:
            img = self.load(sample)
            if bar:
                bar.update(1)
            if img is None:
                continue
            images.append(preprocessing.image(img))
            labels.append(sample.label)
            paths.append(sample.path)
            if len(images) == batch_size:
                yield Batch(stack(images), np.asarray(labels, dtype=np.int64), paths)
                images, labels, paths = [], [], []
        if images:
            yield Batch(stack(images), np.asarray(labels, dtype=np.int64), paths)
        if bar:
            bar.close(f"{len(self.skipped)} unreadable" if self.skipped else "")

    def skipped_report(self) -> Dict[str, object]:
        return {"count": len(self.skipped), "files": [{"path": p, "reason": r} for p, r in self.skipped[:50]]}


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def open_image_folder(root: str, label_names: Optional[Sequence[str]] = None, strict: bool = False,
                      require_labels: bool = False) -> ImageFolder:
    """Index ``root`` (see module docstring); ``label_names`` maps class ids to indices."""
    if not os.path.isdir(root):
        raise UserError(f"image folder not found: {root} (expected a folder of images, class-per-folder "
                        "or flat <wnid>_<name>.JPEG files)")
    index = {name: i for i, name in enumerate(label_names or [])}
    labels_txt = os.path.join(root, "labels.txt")
    if os.path.isfile(labels_txt):
        folder = root
        if os.path.isdir(os.path.join(root, "images")):
            folder = os.path.join(root, "images")
        samples = []
        with open(labels_txt, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                    samples.append(Sample(os.path.join(folder, parts[0]), int(parts[1])))
        bad = [s.label for s in samples if label_names and not 0 <= s.label < len(label_names)]
        if bad:
            raise UserError(f"{labels_txt} has class index {bad[0]} outside the model's "
                            f"{len(label_names or [])} classes; is this image set for this model?")
        ds = ImageFolder(root, samples, "labels.txt", strict=strict)
    else:
        entries = sorted(os.listdir(root))
        subdirs = [e for e in entries if os.path.isdir(os.path.join(root, e)) and not e.startswith(".")]
        files = [e for e in entries if _is_image(e) and os.path.isfile(os.path.join(root, e))]
        if subdirs and not files:
            unknown = [d for d in subdirs if d not in index]
            if index and unknown:
                raise UserError(f"{len(unknown)} class folders in {root} are not among the model's label "
                                f"names (e.g. {unknown[0]!r}); expected folders named like "
                                f"{next(iter(index))!r}, or pass a model whose labels match")
            samples = []
            for d in subdirs:
                label = index.get(d, UNLABELED)
                for dirpath, _, names in sorted(os.walk(os.path.join(root, d))):
                    samples.extend(Sample(os.path.join(dirpath, n), label)
                                   for n in sorted(names) if _is_image(n))
            ds = ImageFolder(root, samples, "class-per-folder", strict=strict)
        else:
            samples = []
            for n in files:
                prefix = n.split("_", 1)[0]
                samples.append(Sample(os.path.join(root, n), index.get(prefix, UNLABELED)))
            layout = "flat-labeled" if samples and all(s.label != UNLABELED for s in samples) else "flat"
            ds = ImageFolder(root, samples, layout, strict=strict)
    if not ds.samples:
        raise UserError(f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)})")
    if require_labels and not ds.labeled:
        n = sum(1 for s in ds.samples if s.label == UNLABELED)
        raise UserError(f"{n} of {len(ds)} images in {root} have no label the model knows; accuracy needs "
                        "class-per-folder (<wnid>/img.JPEG), <wnid>_<name>.JPEG files or a labels.txt")
    return ds


def select(samples: Sequence[Sample], count: int, seed: int) -> List[Sample]:
    """A seeded, class-balanced choice of ``count`` samples (round-robin over shuffled classes).

    The result is sorted by path, so the same (folder, count, seed) always names the same files.
    """
    if count >= len(samples):
        return sorted(samples, key=lambda s: s.path)
    rng = random.Random(seed)
    by_class: Dict[int, List[Sample]] = {}
    for s in sorted(samples, key=lambda s: s.path):
        by_class.setdefault(s.label, []).append(s)
    for group in by_class.values():
        rng.shuffle(group)
    classes = sorted(by_class)
    rng.shuffle(classes)
    chosen: List[Sample] = []
    depth = 0
    while len(chosen) < count:
        for c in classes:
            if depth < len(by_class[c]):
                chosen.append(by_class[c][depth])
                if len(chosen) == count:
                    break
        depth += 1
    return sorted(chosen, key=lambda s: s.path)

