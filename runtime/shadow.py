"""Shadow-mode drift monitor: a reference model checks the deployed one on a few live frames.

INT8 accuracy can drift with the scene (lighting, a new camera) while nobody looks. The monitor
runs the reference (the FP32 or FP16 artifact of the same export, found through the manifests) on
some frames, within a duty-cycle budget (default 1 % of the loop's time) or on every Nth frame, and keeps
rolling figures over the last ``window`` comparisons: top-1 agreement with the deployed model,
mean KL divergence and top-5 overlap. Each comparison is one JSON line. It raises the alarm when
the agreement is below the level measured offline on the val set (a ``verify`` report, or the
calibrate stage's drift record in the INT8 manifest) minus ``margin``, with confidence: the
one-sided Wilson upper bound of the rolling agreement must be under that level, so a handful of
unlucky frames cannot trigger it.

The reference runs in a background thread by default (the deployed path never waits for it;
what it costs is CPU/GPU time shared with the deployed model, bounded by the budget and measured
by ``make bench-runtime``). Device-side, Python 3.8.
"""
import collections
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import numpy as np

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import UserError

LOG = logging.getLogger("inception_deploy.runtime.shadow")
REFERENCE_PRECISIONS = ("fp16", "fp32")       # engine folders tried beside a deployed engine, in order
MAX_GAP_S = 1.0                               # a longer pause between frames accrues no more budget


@dataclass
class ShadowSettings:
    budget: float = 0.01            # fraction of the loop's time the reference may use (when ``every`` is 0)
    every: int = 0                  # reference on every Nth frame instead of a budget
    window: int = 200               # comparisons in the rolling figures
    min_comparisons: int = 30       # no alarm before this many
    confidence: float = 0.99        # one-sided, for the agreement's upper bound
    margin: float = 0.02            # alarm below (expected agreement - margin)
    background: bool = True         # run the reference in its own thread

    def __post_init__(self) -> None:
        if not 0.0 < self.budget <= 1.0 and not self.every:
            raise UserError("shadow budget must be in (0, 1], got %r" % (self.budget,))
        if self.every < 0 or self.window < 1 or self.min_comparisons < 1 or not 0.5 < self.confidence < 1.0:
            raise UserError("shadow settings out of range: every >= 0, window >= 1, min_comparisons >= 1, "
                            "confidence in (0.5, 1)")


def wilson_upper(successes: int, n: int, confidence: float) -> float:
    """One-sided upper confidence bound of a proportion (Wilson score interval)."""
    if n == 0:
        return 1.0
    z = _z(confidence)
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return min(1.0, (centre + spread) / (1 + z * z / n))


def _z(confidence: float) -> float:
    """Standard normal quantile by bisection on erf (no scipy on the device)."""
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < confidence:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


# -- finding the reference and the expected level through the manifests ---------------------------
def _lineage(path: str) -> List[Tuple[str, mf.Manifest]]:
    chain = []
    seen = set()
    while path and os.path.abspath(path) not in seen:
        seen.add(os.path.abspath(path))
        m = mf.read(path, verify=False)
        chain.append((path, m))
        path = mf.parent_path(m, path) or ""
    return chain


def find_reference(deployed: str) -> str:
    """The reference for ``deployed``: an FP16 / FP32 engine beside a deployed engine (same target,
    same input), else the FP32 ONNX at the root of its lineage."""
    chain = _lineage(deployed)
    head = chain[0][1]
    if head.kind == "engine":
        precision_dir = os.path.dirname(os.path.abspath(deployed))
        suffix = os.path.basename(precision_dir).partition("-")[1:]
        for precision in REFERENCE_PRECISIONS:
            candidate = os.path.join(os.path.dirname(precision_dir), precision + "".join(suffix),
                                     os.path.basename(deployed))
            if os.path.isfile(candidate) and os.path.abspath(candidate) != os.path.abspath(deployed):
                m = mf.read(candidate, verify=False)
                if m.model.weights_sha256 == head.model.weights_sha256:
                    return candidate
    for path, m in chain[1:]:
        if m.kind == "onnx" and (m.io.get("input") or {}).get("dtype", "float32") == "float32":
            return path
    raise UserError("no FP32/FP16 reference found for %s through its manifests (%s); pass one with --shadow-reference"
                    % (deployed, " -> ".join(os.path.basename(p) for p, _ in chain)))


def expected_agreement(deployed: str, report: Optional[str] = None) -> Tuple[float, str]:
    """(top-1 agreement measured offline, where from): a ``verify`` report.json, or the calibrate
    stage's drift record on the val set found in the deployed artifact's lineage."""
    if report:
        from inception_deploy.pipeline import atomic
        data = atomic.read_json(report)
        rows = [r for r in data.get("rows", []) if not r.get("reference") and r.get("drift")]
        if not rows:
            raise UserError("%s has no row with drift against a reference; give the report.json written by "
                            "inception-deploy verify" % report)
        return float(rows[0]["drift"]["top1_agreement"]), report
    for path, m in _lineage(deployed):
        drift = m.stage.get("drift") or {}
        if "top1_agreement" in drift:
            return float(drift["top1_agreement"]), "%s (calibrate, %s val images)" % (
                os.path.basename(mf.sidecar(path)), drift.get("images", "?"))
    raise UserError("no measured agreement for %s in its manifests; run inception-deploy verify and pass its "
                    "report.json with --shadow-expect" % deployed)


# -- the monitor -----------------------------------------------------------------------------------------
class ShadowMonitor:
    """``monitor.observe(frame, deployed_logits)`` after each classification; ``monitor.close()``.

    ``reference``: a Classifier (or anything with ``preprocess`` and ``logits``). ``log``: a path or
    a file object for the JSON lines. ``on_alarm(record)`` is called once when the alarm starts.
    """

    def __init__(self, reference: Any, expected: float, settings: Optional[ShadowSettings] = None,
                 log: Any = None, expected_from: str = "", on_alarm: Optional[Callable[[Dict[str, Any]], None]] = None
                 ) -> None:
        self.reference = reference
        self.reference_path = str(getattr(reference, "path", ""))
        self.owns_reference = False          # attach() sets it: close() then closes the reference too
        self.expected = float(expected)
        self.expected_from = expected_from
        self.settings = settings or ShadowSettings()
        self.on_alarm = on_alarm or (lambda r: LOG.warning(alarm_text(r)))
        self._log, self._own_log = (open(log, "a") if isinstance(log, str) else log), isinstance(log, str)
        self._rows: Deque[Tuple[float, float, float]] = collections.deque(maxlen=self.settings.window)
        self._sums = [0.0, 0.0, 0.0]          # agreements, KL, top-5 overlap over the window
        self.comparisons = 0
        self.alarm = False
        self.seen = 0
        self.spent_s = 0.0          # reference time so far
        self.active_s = 0.0         # time between observed frames (gaps over MAX_GAP_S count as MAX_GAP_S)
        self._last: Optional[float] = None
        self._lock = threading.Lock()
        self._pending: Optional[Tuple[int, np.ndarray, np.ndarray]] = None
        self._busy = False
        self._stop = False
        self._error: Optional[BaseException] = None
        self._cond = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None
        if self.settings.background:
            self._thread = threading.Thread(target=self._worker, name="shadow-reference", daemon=True)
            self._thread.start()

    # -- sampling ----------------------------------------------------------------------------------
    def _due(self) -> bool:
        if self._busy or self._pending is not None:
            return False
        if self.settings.every:
            return self.seen % self.settings.every == 0
        return self.spent_s <= self.settings.budget * self.active_s

    def observe(self, frame: np.ndarray, deployed_logits: np.ndarray) -> Optional[Dict[str, Any]]:
        """Note one classified frame; compare it with the reference when the duty cycle allows.
        Returns the comparison record when it ran here (synchronous mode), else None."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        with self._lock:
            now = time.perf_counter()
            if self._last is not None:   # budget accrues while frames flow, not while the app is paused
                self.active_s += min(now - self._last, MAX_GAP_S)
            self._last = now
            self.seen += 1
            index = self.seen - 1
            due = self._due()
            if due and self.settings.background:
                t0 = time.perf_counter()
                self._pending = (index, np.array(frame), np.array(deployed_logits, dtype=np.float32).reshape(-1))
                self.spent_s += time.perf_counter() - t0      # the copy is the deployed thread's share
                self._cond.notify_all()
                return None
        return self._compare(index, frame, np.asarray(deployed_logits).reshape(-1)) if due else None

    def _worker(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job, self._pending, self._busy = self._pending, None, True
            try:
                self._compare(*job)
            except BaseException as e:   # raised again by the next observe()
                self._error = e
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _compare(self, index: int, frame: np.ndarray, deployed: np.ndarray) -> Dict[str, Any]:
        from inception_deploy.pipeline.metrics import kl_per_row, top1_agrees, topk_overlap

        t0 = time.perf_counter()
        ref = np.asarray(self.reference.logits(self.reference.preprocess(frame)[None]), dtype=np.float64)[0]
        reference_ms = (time.perf_counter() - t0) * 1e3
        ref_row, deployed_row = ref[None], deployed[None].astype(np.float64)
        kl = float(kl_per_row(ref_row, deployed_row)[0])
        top5 = float(topk_overlap(ref_row, deployed_row, 5)[0])
        agree = bool(top1_agrees(ref_row, deployed_row)[0])
        with self._lock:
            if len(self._rows) == self._rows.maxlen:
                old = self._rows[0]
                self._sums = [a - b for a, b in zip(self._sums, old)]
            self._rows.append((float(agree), kl, top5))
            self._sums = [a + b for a, b in zip(self._sums, self._rows[-1])]
            self.comparisons += 1
            record = self._record(index, agree, kl, top5, reference_ms, int(ref.argmax()), int(deployed.argmax()))
            started = record["alarm"] and not self.alarm
            self.alarm = record["alarm"]
        if self._log is not None:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
        with self._lock:                  # all of it counts against the budget, not just the inference
            self.spent_s += time.perf_counter() - t0
        if started:
            self.on_alarm(record)
        return record

    def _record(self, index: int, agree: bool, kl: float, top5: float, reference_ms: float, ref_top1: int,
                dep_top1: int) -> Dict[str, Any]:
        s = self.stats()
        return {"time": round(time.time(), 3), "frame": index, "agree": agree, "kl": kl, "top5_overlap": top5,
                "top1_deployed": dep_top1, "top1_reference": ref_top1, "reference_ms": round(reference_ms, 3),
                "window": s, "expected_agreement": self.expected, "alarm": s["alarm"]}

    def stats(self) -> Dict[str, Any]:
        """Rolling figures over the last ``window`` comparisons (running sums: O(1) per frame)."""
        n = len(self._rows)
        agree_sum, kl_sum, top5_sum = self._sums
        agree = int(round(agree_sum))
        upper = wilson_upper(agree, n, self.settings.confidence)
        limit = self.expected - self.settings.margin
        return {"comparisons": n, "top1_agreement": agree / n if n else None,
                "agreement_upper_bound": upper, "limit": limit,
                "mean_kl": kl_sum / n if n else None, "top5_overlap": top5_sum / n if n else None,
                "duty_cycle": self.spent_s / max(self.active_s, 1e-9),
                "alarm": n >= self.settings.min_comparisons and upper < limit}

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until the background reference has finished what it was given (tests, shutdown)."""
        deadline = time.perf_counter() + timeout
        with self._cond:
            while (self._busy or self._pending is not None) and time.perf_counter() < deadline:
                self._cond.wait(0.05)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        if self._own_log and self._log is not None:
            self._log.close()
        self._log = None
        if self.owns_reference:
            self.reference.close()

    def __enter__(self) -> "ShadowMonitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def alarm_text(record: Dict[str, Any]) -> str:
    w = record["window"]
    return ("shadow monitor: deployed model agrees with its reference on %.1f %% of the last %d compared frames "
            "(at most %.1f %% at %s confidence), below the %.1f %% limit (offline level minus margin): the scene "
            "may have drifted from what the model was calibrated for" % (
                100 * w["top1_agreement"], w["comparisons"], 100 * w["agreement_upper_bound"], "99 %",
                100 * w["limit"]))


def attach(classifier: Any, reference: Optional[str] = None, expect: Optional[str] = None,
           settings: Optional[ShadowSettings] = None, log: Any = None,
           on_alarm: Optional[Callable[[Dict[str, Any]], None]] = None) -> ShadowMonitor:
    """A monitor for a loaded Classifier: the reference from the manifests unless given (loaded with
    the same options), the expected agreement from ``expect`` (a float or a verify report.json) or
    the manifests."""
    from inception_deploy.runtime.classifier import Classifier

    ref_path = reference or find_reference(classifier.path)
    if expect is not None and _is_number(expect):
        level, source = float(expect), "given"
    else:
        level, source = expected_agreement(classifier.path, expect)
    options = dict(classifier._options)
    ref = Classifier.load(ref_path, providers=options.get("providers"), threads=options.get("threads", 0),
                          device=options.get("device", 0), frame_path=classifier.frame_path)
    if ref.labels != classifier.labels:
        ref.close()
        raise UserError("reference %s has other labels than %s; pass the reference of the same export" % (
            ref_path, classifier.path))
    monitor = ShadowMonitor(ref, level, settings, log, source, on_alarm)
    monitor.reference_path, monitor.owns_reference = ref_path, True
    return monitor


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True
