"""Run a set of candidates (PyTorch, ONNX Runtime, TensorRT) on the same images: accuracy, drift
against the reference, latency per batch size. Produces the report dict that
:mod:`benchmarks.report` writes and :mod:`benchmarks.gate` checks.

Images are decoded and preprocessed once (the manifest's preprocessing, the shared reader) and
every runner sees the same tensor, so drift measures the runners, not the input pipeline. The
report identifies what was measured by the source weights' hash, the image set's content
fingerprint and the preprocessing's hash (never by ONNX bytes, which change with library versions).
Images the model was calibrated on (listed by its calibration manifest) are named loudly and
recorded under ``calibration_overlap``; the gate fails such a report.
"""
import hashlib
import json
import os
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from inception_deploy.pipeline import metrics
from inception_deploy.benchmarks.environment import environment
from inception_deploy.benchmarks.latency import LatencyResult, Stats, TimingPolicy, WarmupPolicy, measure
from inception_deploy.benchmarks.runners.factory import Candidate, open_runner
from inception_deploy.pipeline import documents
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.datasets import FINGERPRINT_METHOD, ImageFolder, open_image_folder, select
from inception_deploy.pipeline.errors import Unsupported, UserError
from inception_deploy.pipeline.labels import display_name
from inception_deploy.pipeline.preprocess import Preprocessing, stack
from inception_deploy.pipeline.progress import Progress

DEFAULT_COUNT = 1000          # class-balanced, seeded subset of the val images (5 a class on Tiny-ImageNet)
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZES = (1, 8, 32)


@dataclass
class Selection:
    """Which images: ``count`` class-balanced, seeded (``None``: every image in the folder)."""

    root: str
    count: Optional[int] = DEFAULT_COUNT
    seed: int = DEFAULT_SEED


@dataclass
class BenchSettings:
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    warmup: WarmupPolicy = field(default_factory=WarmupPolicy)
    timing: TimingPolicy = field(default_factory=TimingPolicy)
    accuracy_batch: int = 32
    device: str = "cpu"
    threads: int = 0
    cuda_graph: bool = False
    latency: bool = True
    with_preprocessing: bool = False
    preprocessing_images: int = 100

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d


@dataclass
class Missing:
    """An artifact the run expected but did not find (benchmarked what exists instead)."""

    kind: str
    reason: str


@dataclass
class RecordedReference:
    """Reference logits computed elsewhere (the host's FP32 model on a deploy bundle's images), keyed
    by image path relative to the image folder: the reference of a verification on the device."""

    id: str                              # row id, e.g. "fp32/onnxruntime:host"
    precision: str
    backend: str
    logits: Dict[str, np.ndarray]        # relative path -> logits row
    artifact: Dict[str, Any]             # what produced them (file, sha256)
    details: Dict[str, Any]              # how (runner, versions, where)

    def rows(self, paths: Sequence[str], root: str) -> np.ndarray:
        out = []
        for p in paths:
            rel = os.path.relpath(p, root).replace(os.sep, "/")
            if rel not in self.logits:
                raise UserError(f"no recorded reference logits for {rel}: the image folder is not the one the reference "
                                "was computed on")
            out.append(self.logits[rel])
        return np.stack(out).astype(np.float32)


def preprocessing_sha256(pre: Dict[str, Any]) -> str:
    """Hash of what the preprocessing *does* (the descriptive ``steps`` text is left out)."""
    data = {k: v for k, v in pre.items() if k != "steps"}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def open_images(selection: Selection, label_names: Sequence[str]) -> ImageFolder:
    ds = open_image_folder(selection.root, label_names, require_labels=True)
    if selection.count is not None:
        if selection.count < 1:
            raise UserError(f"--count must be at least 1, got {selection.count}")
        ds = ds.subset(select(ds.samples, selection.count, selection.seed))
    return ds


def identity(m: mf.Manifest, ds: ImageFolder, selection: Selection) -> Dict[str, Any]:
    """What the gate compares: source weights, image list, preprocessing (hashes), plus readable names."""
    return {
        "model": {"name": m.model.name, "architecture": m.model.architecture, "source": m.model.source,
                  "weights_sha256": m.model.weights_sha256, "num_classes": m.model.num_classes},
        "images": {"root": os.path.abspath(ds.root), "count": len(ds), "fingerprint": ds.fingerprint(),
                   "fingerprint_method": FINGERPRINT_METHOD,
                   "selection": {"count": selection.count, "seed": selection.seed, "layout": ds.layout}},
        "preprocessing": {"sha256": preprocessing_sha256(m.preprocessing), "description": m.preprocessing},
    }


def calibration_overlap(candidates: Sequence[Candidate], ds: ImageFolder, m: mf.Manifest) -> Dict[str, Any]:
    """Which of the images the model was calibrated on (by content, against every calibration
    manifest of the same weights beside the artifacts or their parents); warned about loudly."""
    from inception_deploy.pipeline.lineage import calibration_manifests

    paths = [c.path for c in candidates if c.manifest is not None and c.backend != "pytorch"]
    manifests = calibration_manifests(paths, m.model.weights_sha256)
    calib = {}
    for side, cal in manifests.items():
        for f in cal.stage.get("files") or []:
            if isinstance(f, dict) and f.get("sha256"):
                calib[f["sha256"]] = side
    hits = [(s.path, calib[d]) for s, d in zip(ds.samples, ds.content_sha256()) if d in calib]
    record: Dict[str, Any] = {"images": len(hits), "of": len(ds),
                              "calibration_manifests": sorted(os.path.relpath(p) for p in manifests),
                              "examples": [os.path.relpath(p) for p, _ in hits[:5]]}
    if hits:
        print(f"WARNING: {len(hits)} of the {len(ds)} images are calibration images of this model (listed in "
              f"{os.path.relpath(hits[0][1])}, e.g. {os.path.relpath(hits[0][0])}): accuracy and drift measured on "
              "them are optimistic, and the gate fails this report. Measure on images the model was not "
              "calibrated on (the shared val/ split, not calib/).", file=sys.stderr)
    return record


def check_same_model(candidates: Sequence[Candidate]) -> mf.Manifest:
    """Every artifact must come from the same weights and preprocessing; returns the first manifest."""
    with_manifest = [c for c in candidates if c.manifest is not None]
    if not with_manifest:
        raise UserError("no artifact with a manifest to take the model, labels and preprocessing from; pass "
                        "an ONNX file or engine written by inception-deploy")
    first = with_manifest[0]
    ref = first.manifest
    assert ref is not None
    for c in with_manifest[1:]:
        m = c.manifest
        assert m is not None
        if m.model.weights_sha256 != ref.model.weights_sha256:
            raise UserError(f"{c.path} comes from other weights ({str(m.model.weights_sha256)[:12]}...) than "
                            f"{first.path} ({str(ref.model.weights_sha256)[:12]}...); bench one model at a time")
        if preprocessing_sha256(m.preprocessing) != preprocessing_sha256(ref.preprocessing):
            raise UserError(f"{c.path} and {first.path} declare different preprocessing; re-derive them from the "
                            "same export")
    return ref


def _label_text(m: mf.Manifest) -> List[str]:
    desc = m.model.label_descriptions or {}
    return [f"{name} ({display_name(name, desc)})" if desc.get(name) else name for name in m.model.label_names]


def _infer_chunked(runner: Any, images: np.ndarray) -> np.ndarray:
    limit = getattr(runner, "max_batch", None)
    if not limit or images.shape[0] <= limit:
        return runner.infer(images)
    return np.concatenate([runner.infer(images[i:i + limit]) for i in range(0, images.shape[0], limit)])


def _latency_batch(pool: np.ndarray, n: int) -> np.ndarray:
    """``n`` real preprocessed images (repeated if the image set is smaller)."""
    if pool.shape[0] >= n:
        return np.ascontiguousarray(pool[:n])
    reps = -(-n // pool.shape[0])
    return np.ascontiguousarray(np.concatenate([pool] * reps)[:n])


def _file_batch_maker(ds: ImageFolder, pre: Preprocessing, n: int) -> Callable[[], np.ndarray]:
    """Each call decodes and preprocesses the next ``n`` files (what a camera/file app pays); files
    already found unreadable are left out (each is counted once, in the accuracy pass)."""
    state = {"i": 0}
    unreadable = {path for path, _ in ds.skipped}
    samples = [s for s in ds.samples if s.path not in unreadable]
    if not samples:
        raise UserError(f"no readable images in {ds.root} to time with preprocessing")

    def prepare() -> np.ndarray:
        images = []
        misses = 0
        while len(images) < n:
            s = samples[state["i"] % len(samples)]
            state["i"] += 1
            img = ds.load(s)
            if img is not None:
                images.append(pre.image(img))
            else:
                misses += 1
                if misses >= len(samples):
                    raise UserError(f"the images in {ds.root} stopped being readable while timing")
        return stack(images)
    return prepare


def measure_preprocessing(ds: ImageFolder, pre: Preprocessing, count: int) -> Dict[str, Any]:
    """Per-image cost of the two input paths: a file decoded and put through the PIL path, and a BGR
    camera frame (already in memory) through the camera-frame path, :meth:`Preprocessing.frame`."""
    pil_ms: List[float] = []
    frame_ms: List[float] = []
    frames = []
    for s in ds.samples[:count]:
        t = time.perf_counter()
        img = ds.load(s)
        if img is None:
            continue
        pre.image(img)
        pil_ms.append((time.perf_counter() - t) * 1000.0)
        frames.append(np.ascontiguousarray(np.asarray(img.convert("RGB"))[:, :, ::-1]))
    for f in frames:
        t = time.perf_counter()
        pre.frame(f)
        frame_ms.append((time.perf_counter() - t) * 1000.0)
    out: Dict[str, Any] = {"images": len(pil_ms)}
    if pil_ms:
        out["file_decode_and_pil_ms"] = Stats.of(pil_ms).to_dict()
        out["camera_frame_ms"] = Stats.of(frame_ms).to_dict()
    return out


@dataclass
class OpenRunner:
    """A candidate whose runner is open (activated), with the seconds that took."""

    candidate: Candidate
    runner: Any
    load_s: float


@dataclass
class AccuracyPass:
    """Every runner's logits over the same images, the labels, and the first images kept for timing."""

    logits: Dict[str, np.ndarray]
    labels: np.ndarray
    pool: np.ndarray
    infer_s: Dict[str, float]


def run_bench(candidates: Sequence[Candidate], selection: Selection, settings: BenchSettings,
              reference: Optional[Candidate] = None, missing: Sequence[Missing] = (),
              skip_unsupported: bool = True, command: str = "bench",
              recorded: Optional[RecordedReference] = None) -> Dict[str, Any]:
    """Measure ``candidates`` (``reference`` first: the one drift is measured against; or
    ``recorded``, logits recorded elsewhere for the same images, which then is the reference).

    Candidates whose runner cannot run here (:class:`Unsupported`) are listed under ``skipped``
    with the reason when ``skip_unsupported``; otherwise the error propagates (``verify``).
    Steps: check the model -> open the images -> open the runners -> accuracy pass -> latency pass
    -> rows -> report.
    """
    t_start = time.perf_counter()
    load_start = _load_average()
    ordered = ([reference] if reference else []) + [c for c in candidates if c is not reference]
    if not ordered:
        raise UserError("nothing to benchmark: give at least one artifact")
    m = check_same_model(ordered)
    pre = m.preprocessing_obj()
    ds = open_images(selection, m.model.label_names)
    ident = identity(m, ds, selection)
    overlap = calibration_overlap(ordered, ds, m)
    sizes = sorted({int(b) for b in settings.batch_sizes})
    if not sizes or sizes[0] < 1:
        raise UserError(f"batch sizes must be positive integers, got {list(settings.batch_sizes)}")
    with ExitStack() as stack_:
        runners, skipped = open_runners(ordered, settings, stack_, skip_unsupported, reference)
        measured = accuracy_pass(runners, ds, pre, settings.accuracy_batch, sizes[-1], recorded)
        if not measured.labels.size:
            raise UserError(f"no readable images in {selection.root} ({len(ds.skipped)} unreadable)")
        lat, notes = latency_pass(runners, measured.pool, sizes, settings, ds, pre)
        base_id = recorded.id if recorded is not None else runners[0].candidate.id
        rows = [_recorded_row(recorded, measured.logits[recorded.id], measured.labels)] if recorded else []
        rows += [_runner_row(o, measured, base_id, _label_text(m), lat, notes) for o in runners]
    cost = measure_preprocessing(ds, pre, settings.preprocessing_images) if settings.with_preprocessing else None
    report = _report_record(command, ident, settings, base_id, rows, missing, skipped, ds, overlap, cost, load_start)
    report["elapsed_s"] = round(time.perf_counter() - t_start, 2)
    return report


def open_runners(ordered: Sequence[Candidate], settings: BenchSettings, stack_: ExitStack, skip_unsupported: bool,
                 reference: Optional[Candidate]) -> Tuple[List[OpenRunner], List[Dict[str, str]]]:
    """Open each candidate's runner inside ``stack_``; one that cannot run here is skipped (with its
    reason) or, without ``skip_unsupported``, raised. Unsupported when none, or not the reference, can run."""
    skipped: List[Dict[str, str]] = []
    runners: List[OpenRunner] = []
    for c in ordered:
        try:
            runner = open_runner(c, device=settings.device, threads=settings.threads, cuda_graph=settings.cuda_graph)
            t = time.perf_counter()
            stack_.enter_context(runner)
            runners.append(OpenRunner(c, runner, time.perf_counter() - t))
        except Unsupported as e:
            if not skip_unsupported:
                raise
            skipped.append({"id": c.id, "artifact": c.path, "reason": str(e)})
            print(f"skip {c.id}: {e}")
    if not runners:
        raise Unsupported("no candidate can run on this host: "
                          + "; ".join(f"{s['id']}: {s['reason']}" for s in skipped))
    if reference is not None and runners[0].candidate is not reference:
        raise Unsupported(f"the reference {reference.id} cannot run here: {skipped[0]['reason']}")
    return runners, skipped


def accuracy_pass(runners: Sequence[OpenRunner], ds: ImageFolder, pre: Preprocessing, batch_size: int,
                  pool_size: int, recorded: Optional[RecordedReference]) -> AccuracyPass:
    """One pass over the images, every runner on the same preprocessed batch; keeps the first
    ``pool_size`` images for the latency pass."""
    logits: Dict[str, List[np.ndarray]] = {o.candidate.id: [] for o in runners}
    if recorded is not None:
        logits[recorded.id] = []
    labels: List[np.ndarray] = []
    pool: List[np.ndarray] = []
    pooled = 0
    infer_s = {o.candidate.id: 0.0 for o in runners}
    label = f"accuracy ({len(runners)} runner{'s' if len(runners) > 1 else ''})"
    for batch in ds.batches(pre, batch_size, progress=label):
        labels.append(batch.labels)
        if recorded is not None:
            logits[recorded.id].append(recorded.rows(batch.paths, ds.root))
        if pooled < pool_size:
            pool.append(batch.images)
            pooled += batch.images.shape[0]
        for o in runners:
            t = time.perf_counter()
            logits[o.candidate.id].append(_infer_chunked(o.runner, batch.images))
            infer_s[o.candidate.id] += time.perf_counter() - t
    if not labels:
        return AccuracyPass({}, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32), infer_s)
    return AccuracyPass({k: np.concatenate(v) for k, v in logits.items()}, np.concatenate(labels),
                        np.concatenate(pool), infer_s)


def latency_pass(runners: Sequence[OpenRunner], pool: np.ndarray, sizes: Sequence[int], settings: BenchSettings,
                 ds: ImageFolder, pre: Preprocessing) -> Tuple[Dict[str, List[LatencyResult]], Dict[str, List[str]]]:
    """Latency per runner and batch size on real images (and with file decoding and preprocessing
    when asked); batch sizes above a runner's max batch are noted, not timed."""
    lat: Dict[str, List[LatencyResult]] = {o.candidate.id: [] for o in runners}
    notes: Dict[str, List[str]] = {o.candidate.id: [] for o in runners}
    if not settings.latency:
        return lat, notes
    passes = 2 if settings.with_preprocessing else 1
    bar = Progress(len(runners) * len(sizes) * passes * settings.timing.iterations, "latency", unit="it")
    for o in runners:
        limit = getattr(o.runner, "max_batch", None)
        for n in sizes:
            if limit and n > limit:
                notes[o.candidate.id].append(f"batch {n} skipped: above this runner's max batch {limit}")
                bar.update(settings.timing.iterations * passes)
                continue
            lat[o.candidate.id].append(measure(o.runner, _latency_batch(pool, n), settings.warmup, settings.timing,
                                               on_iteration=lambda: bar.update(1)))
            if settings.with_preprocessing:
                lat[o.candidate.id].append(measure(o.runner, _latency_batch(pool, n), settings.warmup,
                                                   settings.timing, prepare=_file_batch_maker(ds, pre, n),
                                                   on_iteration=lambda: bar.update(1)))
    bar.close()
    return lat, notes


def _runner_row(o: OpenRunner, measured: AccuracyPass, base_id: str, names: List[str],
                lat: Dict[str, List[LatencyResult]], notes: Dict[str, List[str]]) -> Dict[str, Any]:
    """One report row: what ran, its accuracy, drift against the reference, latency."""
    c, runner = o.candidate, o.runner
    is_base = c.id == base_id
    outs = measured.logits
    describe = getattr(runner, "describe", None)
    return {
        "id": c.id, "precision": c.precision, "backend": c.backend, "runner": runner.name,
        "reference": is_base,
        "artifact": _artifact_record(c),
        "runner_details": describe() if callable(describe) else {"providers": getattr(runner, "providers_used", None)},
        "load_s": round(o.load_s, 3),
        "accuracy": metrics.accuracy(outs[c.id], measured.labels).to_dict(),
        "accuracy_pass_s": round(measured.infer_s[c.id], 3),
        "drift": None if is_base else metrics.compare(outs[c.id], outs[base_id], measured.labels, names).to_dict(),
        "latency": [r.to_dict() for r in lat[c.id]],
        "notes": notes[c.id],
    }


def _report_record(command: str, ident: Dict[str, Any], settings: BenchSettings, base_id: str,
                   rows: List[Dict[str, Any]], missing: Sequence[Missing], skipped: List[Dict[str, str]],
                   ds: ImageFolder, overlap: Dict[str, Any], preprocessing_cost: Optional[Dict[str, Any]],
                   load_start: Optional[float]) -> Dict[str, Any]:
    """The report (schema ``inception-deploy/report@1``) around the measured rows."""
    threads = {"requested": settings.threads}
    torch = sys.modules.get("torch")  # only if the PyTorch runner loaded it: device hosts never import torch
    if torch is not None:
        threads["torch"] = torch.get_num_threads()
    return {
        "schema": documents.REPORT,
        "command": command,
        "created": mf.now(),
        "tool": documents.tool_record(),
        "identity": ident,
        "environment": environment(threads),
        "settings": settings.to_dict(),
        "reference": base_id,
        "rows": rows,
        "missing": [asdict(x) for x in missing],
        "skipped": skipped,
        "images_unreadable": ds.skipped_report(),
        "calibration_overlap": overlap,
        "preprocessing_cost": preprocessing_cost,
        "host_load": {"start": load_start, "end": _load_average()},
        "elapsed_s": 0.0,
    }


def _recorded_row(recorded: RecordedReference, logits: np.ndarray, y: np.ndarray) -> Dict[str, Any]:
    """The report row of recorded reference logits: accuracy only (no runner ran here, no latency)."""
    return {"id": recorded.id, "precision": recorded.precision, "backend": recorded.backend, "runner": "recorded",
            "reference": True, "artifact": recorded.artifact, "runner_details": recorded.details, "load_s": 0.0,
            "accuracy": metrics.accuracy(logits, y).to_dict(), "accuracy_pass_s": 0.0, "drift": None, "latency": [],
            "notes": ["logits recorded elsewhere (%s); no latency measured here" % recorded.details.get("where", "?")]}


def _load_average() -> Optional[float]:
    """1-minute load average (other processes competing for the cores make latency noisy)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _artifact_record(c: Candidate) -> Dict[str, Any]:
    if c.backend == "pytorch":
        return {"source": c.path, "kind": "pytorch"}
    m = c.manifest
    return {"path": os.path.abspath(c.path), "kind": m.kind if m else None,
            "sha256": m.artifact.get("sha256") if m else None, "bytes": m.artifact.get("bytes") if m else None}
