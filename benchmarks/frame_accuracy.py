"""How much the camera-frame paths change a model's outputs, against the exact (PIL) preprocessing.

Every image becomes a camera frame (:func:`pipeline.frame_variant.camera_frame`: the shared val
images scaled to cover 640x480, 1280x720, 1920x1080 frames; the shared photos at their own sizes),
and three inputs are made from the same BGR pixels:

- ``exact``: :meth:`Preprocessing.image` on the frame (timm's eval transform, bit for bit);
- ``fast``: :meth:`Preprocessing.frame` (the default CPU path of the runtime);
- ``graph``: the frame itself, through the model with the preprocessing in its graph
  (:func:`pipeline.frame_graph.add_frame_input`, run by ONNX Runtime), when asked for.

The network (ONNX Runtime, the same session) scores each; per set and path the report gives
top-1 agreement with ``exact``, the mean KL divergence of the softmax outputs, top-5 overlap, top-1
accuracy against the labels, and the largest input difference in grey levels.
"""
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from inception_deploy.pipeline import documents
from inception_deploy.pipeline.datasets import ImageFolder, open_image_folder, select
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.frame_io import frame_size_name
from inception_deploy.pipeline.frame_variant import camera_frame
from inception_deploy.pipeline.metrics import kl_per_row, top1_agrees, topk_overlap

PATHS = ("fast", "graph")
CHUNK = 64


@dataclass
class Tally:
    """Running totals of one (set, path) against the exact path."""

    images: int = 0
    agree: int = 0
    kl_sum: float = 0.0
    top5_overlap_sum: float = 0.0
    correct_exact: int = 0
    correct: int = 0
    labeled: int = 0
    max_levels: float = 0.0
    worst_kl: float = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray, labels: np.ndarray) -> None:
        kl = kl_per_row(ref, got)
        self.images += len(ref)
        self.agree += int(np.sum(top1_agrees(ref, got)))
        self.kl_sum += float(kl.sum())
        self.worst_kl = max(self.worst_kl, float(kl.max()))
        self.top5_overlap_sum += float(topk_overlap(ref, got, 5).sum())
        known = labels >= 0
        self.labeled += int(known.sum())
        self.correct_exact += int(np.sum(ref.argmax(1)[known] == labels[known]))
        self.correct += int(np.sum(got.argmax(1)[known] == labels[known]))

    def to_dict(self) -> Dict[str, Any]:
        n = max(self.images, 1)
        return {"images": self.images, "top1_agreement": self.agree / n, "disagreements": self.images - self.agree,
                "mean_kl": self.kl_sum / n, "worst_kl": self.worst_kl, "top5_overlap": self.top5_overlap_sum / n,
                "top1_exact": self.correct_exact / max(self.labeled, 1), "top1": self.correct / max(self.labeled, 1),
                "labeled": self.labeled, "max_abs_levels": self.max_levels}


@dataclass
class Settings:
    sizes: Sequence[Tuple[int, int]] = ((480, 640), (720, 1280), (1080, 1920))
    count: Optional[int] = None          # val images (None: all)
    photos: bool = True
    graph: bool = True
    threads: int = 1
    seed: int = 0
    reach: Optional[float] = None        # frame_plan.REMAINING_REACH override (to evaluate alternatives)


@dataclass
class _Chunk:
    exact: List[np.ndarray] = field(default_factory=list)
    fast: List[np.ndarray] = field(default_factory=list)
    frames: List[np.ndarray] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)


class FrameAccuracy:
    """Runs the comparison for one network ONNX (``model.onnx`` of an export)."""

    def __init__(self, onnx_path: str, settings: Settings) -> None:
        from inception_deploy.pipeline import manifest as mf
        from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

        self.manifest = mf.read(onnx_path, expect_kind="onnx*")
        self.pre = self.manifest.preprocessing_obj()
        self.onnx_path = onnx_path
        self.settings = settings
        self.network = OnnxRuntimeBackend(onnx_path, threads=settings.threads).activate()
        if self.network.input_dtype != np.float32:
            raise UserError("%s takes camera frames already; give the network model (model.onnx) it was made from"
                            % onnx_path)
        self._graph: Optional[Tuple[Tuple[int, int], Any]] = None

    def _graph_backend(self, size: Tuple[int, int]) -> Any:
        """The network with the preprocessing of ``size`` frames in its graph (the last size only:
        every photo has its own)."""
        if self._graph is None or self._graph[0] != size:
            import os
            import tempfile

            import onnx

            from inception_deploy.pipeline.frame_graph import add_frame_input
            from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

            model = add_frame_input(onnx.load(self.onnx_path), self.pre, size, self.manifest.input_name)
            with tempfile.TemporaryDirectory(prefix="frame-accuracy.") as tmp:
                path = os.path.join(tmp, "model.onnx")
                onnx.save(model, path)
                self._graph = (size, OnnxRuntimeBackend(path, threads=self.settings.threads).activate())
        return self._graph[1]

    def _fast(self, frame: np.ndarray) -> np.ndarray:
        if self.settings.reach is None:
            return self.pre.frame(frame)
        from inception_deploy.pipeline import frame_plan

        plan = frame_plan.plan_frame(self.pre, frame.shape[0], frame.shape[1], self.settings.reach)
        return self.pre._normalise_uint8(frame_plan.run_pillow(frame, plan))

    def measure(self, frames: Iterator[Tuple[np.ndarray, int]], tallies: Dict[str, Tally]) -> None:
        """Score frames (all of one size when the graph is measured) into ``tallies`` per path."""
        chunk = _Chunk()
        for frame, label in frames:
            chunk.exact.append(self.pre.frame(frame, path="exact", resampler="pil"))
            chunk.fast.append(self._fast(frame))
            chunk.frames.append(frame)
            chunk.labels.append(label)
            if len(chunk.labels) == CHUNK:
                self._score(chunk, tallies)
                chunk = _Chunk()
        if chunk.labels:
            self._score(chunk, tallies)

    def _score(self, chunk: _Chunk, tallies: Dict[str, Tally]) -> None:
        exact, fast = np.stack(chunk.exact), np.stack(chunk.fast)
        labels = np.asarray(chunk.labels, dtype=np.int64)
        ref = self.network.infer(exact)
        tallies["fast"].add(ref, self.network.infer(fast), labels)
        levels = 255.0 * np.asarray(self.pre.std, dtype=np.float32).reshape(1, 3, 1, 1)
        tallies["fast"].max_levels = max(tallies["fast"].max_levels, float((np.abs(fast - exact) * levels).max()))
        if self.settings.graph:
            got = [self._graph_backend(frame.shape[:2]).infer(frame[None]) for frame in chunk.frames]
            tallies["graph"].add(ref, np.concatenate(got), labels)




def _val_frames(folder: ImageFolder, size: Tuple[int, int]) -> Iterator[Tuple[np.ndarray, int]]:
    for sample in folder.samples:
        img = folder.load(sample)
        if img is not None:
            yield camera_frame(img, size), sample.label


def _photo_frames(folder: ImageFolder) -> Iterator[Tuple[np.ndarray, int]]:
    from inception_deploy.pipeline.preprocess import to_rgb

    for sample in folder.samples:
        img = folder.load(sample)
        if img is not None:
            yield np.ascontiguousarray(np.asarray(to_rgb(img), dtype=np.uint8)[:, :, ::-1]), sample.label


def run(onnx_path: str, images: str, photos: Optional[str], settings: Settings,
        progress: Any = None) -> Dict[str, Any]:
    """The report: per set (val at each size, photos) and path, the figures of :class:`Tally`."""
    t0 = time.perf_counter()
    job = FrameAccuracy(onnx_path, settings)
    labels = job.manifest.model.label_names
    val = open_image_folder(images, labels)
    if settings.count is not None:
        val = val.subset(select(val.samples, settings.count, settings.seed))
    sets: List[Tuple[str, Iterator[Tuple[np.ndarray, int]], int]] = [
        ("val %s" % frame_size_name(size), _val_frames(val, size), len(val)) for size in settings.sizes]
    if photos and settings.photos:
        folder = open_image_folder(photos, labels)
        sets.append(("photos (own sizes)", _photo_frames(folder), len(folder)))
    paths = ["fast"] + (["graph"] if settings.graph else [])
    rows = []
    for name, frames, total in sets:
        tallies = {p: Tally() for p in paths}
        started = time.perf_counter()
        job.measure(_report_progress(frames, name, total, progress), tallies)
        for p in paths:
            rows.append(dict(tallies[p].to_dict(), set=name, path=p))
        if progress:
            progress("%s: %d frames in %.0f s" % (name, total, time.perf_counter() - started))
    from inception_deploy.pipeline import frame_plan

    return {"schema": documents.FRAME_ACCURACY, "model": job.manifest.model.name,
            "onnx": onnx_path, "preprocessing": job.manifest.preprocessing, "images": images, "photos": photos,
            "settings": dict(asdict(settings), sizes=[frame_size_name(s) for s in settings.sizes],
                             reach=settings.reach if settings.reach is not None else frame_plan.REMAINING_REACH),
            "frames": "val images scaled (PIL bicubic, aspect kept) to cover the frame, center-cropped; photos "
                      "decoded by PIL at their own sizes, as BGR frames",
            "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}


def _report_progress(frames: Iterator[Tuple[np.ndarray, int]], name: str, total: int,
                     progress: Any) -> Iterator[Tuple[np.ndarray, int]]:
    step = max(1, total // 10)
    for i, item in enumerate(frames, 1):
        if progress and i % step == 0:
            progress("%s: %d/%d frames" % (name, i, total))
        yield item


def markdown(report: Dict[str, Any]) -> str:
    """The report as the table docs/runtime.md shows."""
    lines = ["| frames | path | images | top-1 agreement | mean KL | top-5 overlap | top-1 exact / path | "
             "max diff (grey levels) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["rows"]:
        lines.append("| %s | %s | %d | %.2f %% (%d differ) | %.1e | %.4f | %.2f / %.2f %% | %s |" % (
            r["set"], r["path"], r["images"], 100 * r["top1_agreement"], r["disagreements"], r["mean_kl"],
            r["top5_overlap"], 100 * r["top1_exact"], 100 * r["top1"],
            "%.1f" % r["max_abs_levels"] if r["path"] == "fast" else "-"))
    return "\n".join(lines) + "\n"
