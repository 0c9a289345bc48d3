"""The labeled image folder reader every stage uses (device-side: numpy + PIL, no torch).

Layouts, detected in this order:
- ``labels.txt`` beside the images (``<file> <class index>`` lines; images in the folder or its
  ``images/`` subfolder), as the shared ImageNet val sample;
- class-per-folder: ``root/<class id>/*.JPEG`` where the folder name is a label name (a WordNet
  id); the index comes from the model's ``label_names``, never from sorted folder order;
- flat: ``root/<wnid>_<anything>.JPEG`` (label parsed from the prefix), else unlabeled (-1).

Every image is read by :func:`load_image`, the one loader (bench, calibrate, export parity, the
runtime's file helper): decode with Pillow, then apply the EXIF orientation, as ``cv2.imread``
and most viewers do, so a photo taken sideways reaches the network upright on every path.
GIFs give their first frame.

Unreadable or truncated images are counted once each and reported (``skipped``) or, with
``strict``, fail the run with the file named; a bad file never crashes a run halfway.

An image set is identified by its content (:meth:`ImageFolder.fingerprint`: relative path,
label and sha256 of every file), with the file hashes cached by path, size, mtime, ctime and
inode (:class:`HashCache`) so that fingerprinting 5,000 images again costs a directory scan.
"""
import hashlib
import os
import random
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.hashing import hash_cache
from inception_deploy.pipeline.preprocess import Preprocessing, stack

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
UNLABELED = -1
FINGERPRINT_METHOD = "sha256 of sorted (relative path, label, content sha256)"


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

    def content_sha256(self, progress: Optional[str] = None) -> List[str]:
        """sha256 of every sample's file, in sample order (cached: :class:`HashCache`)."""
        return hash_cache().sha256_many([s.path for s in self.samples], progress)

    def fingerprint(self) -> str:
        """Identifies the image *set* by content: sha256 over the sorted (relative path, label, file sha256).

        Other pictures under the same file names give another fingerprint (:data:`FINGERPRINT_METHOD`)."""
        digests = dict(zip((s.path for s in self.samples), self.content_sha256()))
        h = hashlib.sha256()
        for s in sorted(self.samples, key=lambda s: s.path):
            h.update(("%s\t%d\t%s\n" % (os.path.relpath(s.path, self.root), s.label, digests[s.path])).encode())
        return h.hexdigest()

    def load(self, sample: Sample) -> Optional[object]:
        """The decoded PIL image (:func:`load_image`), or None (recorded once in ``skipped``) if unreadable."""
        try:
            return load_image(sample.path)
        except UserError as e:
            if self.strict:
                raise UserError(f"{e} (remove it, or run without --strict to skip and count such files)") from None
            if not any(path == sample.path for path, _ in self.skipped):
                self.skipped.append((sample.path, str(e).split(": ", 1)[-1]))
            return None

    def readable(self, progress: Optional[str] = None) -> "ImageFolder":
        """This folder without the samples that do not decode (each recorded in ``skipped``).

        JPEGs are decoded at reduced scale (``draft``), which still reads every byte and so
        still catches truncated files, at a fraction of the full decode's cost."""
        from inception_deploy.pipeline.progress import Progress

        bar = Progress(len(self.samples), progress, unit="img") if progress else None
        keep = []
        for sample in self.samples:
            try:
                load_image(sample.path, draft=True)
                keep.append(sample)
            except UserError as e:
                if self.strict:
                    raise
                self.skipped.append((sample.path, str(e).split(": ", 1)[-1]))
            if bar:
                bar.update(1)
        if bar:
            bar.close(f"{len(self.skipped)} unreadable" if self.skipped else "")
        return ImageFolder(self.root, keep, self.layout, list(self.skipped), self.strict)

    def batches(self, preprocessing: Preprocessing, batch_size: int = 64,
                progress: Optional[str] = None) -> Iterator[Batch]:
        """Decode and preprocess in order; skipped files are left out of the batches."""
        from inception_deploy.pipeline.progress import Progress

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


def load_image(path: str, draft: bool = False) -> Any:
    """Decode ``path`` with Pillow and apply its EXIF orientation (as ``cv2.imread`` does); a PIL image.

    An unreadable, truncated or oversized file is a UserError naming it. ``draft`` lets JPEGs
    decode at reduced scale (a readability check, not for preprocessing)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            if draft and img.format == "JPEG":
                img.draft("RGB", (max(1, img.width // 8), max(1, img.height // 8)))
            img.load()
            try:
                return ImageOps.exif_transpose(img)
            except Exception:  # a malformed EXIF block: keep the pixels as stored, as cv2 does
                return img.copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"unreadable image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


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

