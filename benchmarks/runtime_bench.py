"""What one camera frame costs in ``runtime.Classifier``: preprocess, inference, postprocess, classify.

For each frame size a real photo is scaled to cover the frame (:func:`pipeline.frame_variant.camera_frame`)
and each stage is timed on its own, ``iterations`` times after ``warmup`` calls, as a camera loop
calls it: ``preprocess`` (BGR frame -> network input), ``inference`` (the backend on a batch of one),
``postprocess`` (softmax + top-5), and ``classify`` (all three, end to end). Medians in
milliseconds, and each as a ratio to inference alone: a preprocessing ratio above 1 means the CPU
work costs more than the network. Per-core figures: run it under ``taskset -c 1`` with
``threads=1`` (``make bench-runtime`` does), and read the load average printed with them.
"""
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from inception_deploy.pipeline import documents
from inception_deploy.pipeline.frame_io import frame_size_name

DEFAULT_SIZES = ((480, 640), (720, 1280), (1080, 1920))


@dataclass
class Settings:
    sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES
    iterations: int = 60
    warmup: int = 5
    threads: int = 1
    frame_paths: Sequence[str] = ("fast", "exact")


def median_ms(fn: Callable[[], Any], iterations: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def time_stages(clf: Any, frame: np.ndarray, iterations: int, warmup: int) -> Dict[str, float]:
    """Median ms of each stage of ``clf`` on ``frame``, and the ratios to inference."""
    x = clf.preprocess(frame)[None]
    logits = clf.logits(x)
    row = {"preprocess_ms": median_ms(lambda: clf.preprocess(frame), iterations, warmup),
           "inference_ms": median_ms(lambda: clf.logits(x), iterations, warmup),
           "postprocess_ms": median_ms(lambda: clf.predictions(logits, 5), iterations, warmup),
           "classify_ms": median_ms(lambda: clf.classify(frame, 5), iterations, warmup)}
    for stage in ("preprocess", "postprocess", "classify"):
        row[stage + "_ratio"] = row[stage + "_ms"] / row["inference_ms"]
    return row


def run(model: str, photo: str, settings: Settings, graph_models: Sequence[str] = (),
        progress: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Rows per (model, frame path, frame size). ``graph_models``: frame-input variants
    (``model.frame-WxH.onnx``), timed at their own frame size (their preprocessing is inference);
    ``model`` itself is timed that way when it is one."""
    from PIL import Image

    from inception_deploy.pipeline import manifest as mf
    from inception_deploy.pipeline.frame_io import frame_input_size
    from inception_deploy.pipeline.frame_variant import camera_frame

    with Image.open(photo) as img:
        frames = {size: camera_frame(img, size) for size in settings.sizes}
        cpu_model = frame_input_size(mf.read(model).io) is None
        variants = list(graph_models) + ([] if cpu_model else [model])
        for variant in variants:
            size = frame_input_size(mf.read(variant).io)
            if size not in frames:
                frames[size] = camera_frame(img, size)
    rows = _cpu_rows(model, frames, settings, progress) if cpu_model else []
    for variant in variants:
        rows.append(_timed(variant, "in graph", None, frames, settings, progress))
    return {"schema": documents.RUNTIME_BENCH, "model": model, "photo": photo,
            "settings": {"iterations": settings.iterations, "warmup": settings.warmup, "threads": settings.threads,
                         "sizes": [frame_size_name(s) for s in settings.sizes]},
            "load_average": _load(), "cpu_affinity": _affinity(), "rows": rows}


def _cpu_rows(model: str, frames: Dict[Tuple[int, int], np.ndarray], settings: Settings,
              progress: Optional[Callable[[str], None]]) -> List[Dict[str, Any]]:
    rows = []
    for path in settings.frame_paths:
        for size in settings.sizes:
            rows.append(_timed(model, path, size, frames, settings, progress))
    return rows


def _timed(model: str, frame_path: str, size: Optional[Tuple[int, int]], frames: Dict[Tuple[int, int], np.ndarray],
           settings: Settings, progress: Optional[Callable[[str], None]]) -> Dict[str, Any]:
    """One row: ``model`` with ``frame_path`` on the frame of ``size`` (None: the model's own frame size)."""
    from inception_deploy.runtime import Classifier

    with Classifier.load(model, threads=settings.threads,
                         frame_path=frame_path if frame_path in ("fast", "exact") else "fast") as clf:
        size = size or clf.frame_size
        row = dict(time_stages(clf, frames[size], settings.iterations, settings.warmup), model=os.path.basename(model),
                   frame_path=frame_path, frame=frame_size_name(size), backend=clf.backend.name)
    if progress:
        progress(line(row))
    return row


def line(row: Dict[str, Any]) -> str:
    return ("%s %-9s %-9s preprocess %6.2f ms (%.2fx)  inference %6.2f ms  postprocess %5.3f ms  classify %6.2f ms "
            "(%.2fx)" % (row["model"], row["frame"], row["frame_path"], row["preprocess_ms"], row["preprocess_ratio"],
                         row["inference_ms"], row["postprocess_ms"], row["classify_ms"], row["classify_ratio"]))


def markdown(report: Dict[str, Any]) -> str:
    lines = ["| model | frame | CPU preprocessing | preprocess | inference | postprocess | classify | "
             "preprocess / inference | classify / inference |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["rows"]:
        lines.append("| %s | %s | %s | %.2f ms | %.2f ms | %.3f ms | %.2f ms | %.2f | %.2f |" % (
            r["model"], r["frame"], r["frame_path"], r["preprocess_ms"], r["inference_ms"], r["postprocess_ms"],
            r["classify_ms"], r["preprocess_ratio"], r["classify_ratio"]))
    return "\n".join(lines) + "\n"


def _load() -> Optional[List[float]]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _affinity() -> Optional[List[int]]:
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter else None


def shadow_overhead(model: str, frame: np.ndarray, frames: int = 100, rounds: int = 20, threads: int = 1,
                    settings: Any = None) -> Dict[str, Any]:
    """Cost of the shadow monitor at its default duty cycle on a camera loop (preprocess, inference,
    softmax + top-5): ``rounds`` pairs of ``frames``-frame blocks without and with ``observe``,
    alternating, so load from other processes hits both alike. Per frame: the process's CPU time
    (both threads; insensitive to other processes) and wall time; the overhead is the ratio of the
    medians. One frame repeated: time is measured, not agreement (alarms are not reported)."""
    from inception_deploy.runtime import Classifier, shadow

    with Classifier.load(model, threads=threads) as clf:
        monitor = shadow.attach(clf, settings=settings, on_alarm=lambda record: None)
        blocks: Dict[bool, Dict[str, List[float]]] = {False: {"cpu": [], "wall": []}, True: {"cpu": [], "wall": []}}
        try:
            for _ in range(rounds):
                for watch in (False, True):
                    c0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(frames):
                        logits = clf.logits(clf.preprocess(frame)[None])
                        clf.rank(clf.probabilities(logits)[0], 5)
                        if watch:
                            monitor.observe(frame, logits[0])
                    monitor.wait_idle()
                    blocks[watch]["cpu"].append((time.process_time() - c0) / frames * 1e3)
                    blocks[watch]["wall"].append((time.perf_counter() - t0) / frames * 1e3)
            stats = monitor.stats()
        finally:
            monitor.close()
    out: Dict[str, Any] = {"model": os.path.basename(model), "reference": os.path.basename(monitor.reference_path),
                           "frames_per_block": frames, "rounds": rounds, "comparisons": monitor.comparisons,
                           "duty_cycle": stats["duty_cycle"], "budget": monitor.settings.budget,
                           "background": monitor.settings.background}
    for kind in ("cpu", "wall"):
        base, watched = float(np.median(blocks[False][kind])), float(np.median(blocks[True][kind]))
        out.update({"%s_ms_without" % kind: base, "%s_ms_with" % kind: watched, "%s_overhead" % kind: watched / base - 1})
    return out
