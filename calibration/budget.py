"""The accuracy budget: keep the fewest layers out of INT8 so top-1/top-5 drift stays within it.

Decisions are taken on the *choose* half of the evaluation images and the result is measured on
the *report* half (0.1 point of 5,000 images is 5 images: a search that picks its best step on
the same images would report its own noise). Exclusions follow the sensitivity ranking, growing
1, 2, 3, 4, 6, 8, 12, ... nodes; the search stops when the budget holds, when ``patience`` steps in
a row did not improve the best drift, or at the time limit.
"""
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from inception_deploy.pipeline.metrics import compare
from inception_deploy.pipeline.errors import UserError

SCHEDULE = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


@dataclass(frozen=True)
class Budget:
    top1: float      # allowed drop, points
    top5: float

    @classmethod
    def parse(cls, text: str) -> "Budget":
        values: Dict[str, float] = {}
        for part in text.split(","):
            m = re.fullmatch(r"\s*(top1|top5)\s*=\s*(\S+)\s*", part)
            try:
                value = float(m.group(2)) if m else -1.0
            except ValueError:
                value = -1.0
            if not m or not 0.0 <= value < float("inf"):
                raise UserError(f"accuracy budget {text!r}: expected 'top1=0.3,top5=0.3' (allowed drop in points, "
                                "numbers >= 0 such as 0.3 or 1e-3)")
            if m.group(1) in values:
                raise UserError(f"accuracy budget {text!r} names {m.group(1)} twice")
            values[m.group(1)] = value
        if "top1" not in values and "top5" not in values:
            raise UserError(f"accuracy budget {text!r} names neither top1 nor top5")
        return cls(values.get("top1", float("inf")), values.get("top5", float("inf")))

    def holds(self, top1_drop: float, top5_drop: float) -> bool:
        return top1_drop <= self.top1 + 1e-9 and top5_drop <= self.top5 + 1e-9

    def excess(self, top1_drop: float, top5_drop: float) -> float:
        """How far over budget (points, the worse of the two); <= 0 means within."""
        return max(top1_drop - self.top1, top5_drop - self.top5)

    def to_dict(self) -> Dict[str, float]:
        return {"top1": self.top1, "top5": self.top5}


@dataclass
class Step:
    excluded: List[str]
    top1_drop: float
    top5_drop: float
    top1_agreement: float
    within: bool
    seconds: float


@dataclass
class BudgetResult:
    budget: Budget
    met: bool
    excluded: List[str]
    steps: List[Step]
    stopped: str                      # why the search ended
    choose_images: int
    report_images: int
    report_drift: Dict[str, object]   # chosen model on the report half (pipeline.metrics.Drift)
    report_drift_no_exclusion: Dict[str, object]
    report_within: bool
    ranking: List[Dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> Dict[str, object]:
        d = asdict(self)
        d["budget"] = self.budget.to_dict()
        return d


def search(budget: Budget, build: Callable[[Sequence[str]], str], predict: Callable[[str, np.ndarray], np.ndarray],
           baseline: np.ndarray, labels: np.ndarray, choose: np.ndarray, report: np.ndarray,
           initial_model: str, rank: Callable[[], List[str]], max_seconds: float,
           label_names: Optional[Sequence[str]] = None, patience: int = 3,
           ranking_record: Optional[Callable[[], List[Dict[str, object]]]] = None) -> "tuple[BudgetResult, str]":
    """Run the search; returns the result and the path of the chosen model.

    ``build(excluded)`` writes a Q/DQ model with those nodes left in high precision and returns its
    path; ``predict(path, index)`` returns logits for the evaluation images at ``index``.
    """
    t0 = time.perf_counter()
    judge = _Judge(budget, predict, baseline, labels, choose)
    steps = [judge.measure(initial_model, [])]
    best = _Best(steps[0], initial_model, "budget holds without exclusions" if steps[0].within else "")
    ranked: List[str] = []
    if not best.step.within:
        ranked = rank()
        best = _exclude_until_within(build, judge, ranked, steps, best, t0 + max_seconds, max_seconds, patience)
    final = compare(predict(best.path, report), baseline[report], labels[report], label_names)
    first = final if best.path == initial_model else compare(predict(initial_model, report), baseline[report],
                                                             labels[report], label_names)
    result = BudgetResult(budget=budget, met=best.step.within, excluded=best.step.excluded, steps=steps,
                          stopped=best.stopped, choose_images=int(len(choose)), report_images=int(len(report)),
                          report_drift=final.to_dict(), report_drift_no_exclusion=first.to_dict(),
                          report_within=budget.holds(final.top1_drop, final.top5_drop),
                          ranking=(ranking_record() if ranking_record and ranked else []),
                          seconds=round(time.perf_counter() - t0, 2))
    return result, best.path


@dataclass
class _Best:
    step: Step
    path: str
    stopped: str = ""


class _Judge:
    """Drift of a candidate on the *choose* images, as one :class:`Step` (and a line on the terminal)."""

    def __init__(self, budget: Budget, predict: Callable[[str, np.ndarray], np.ndarray], baseline: np.ndarray,
                 labels: np.ndarray, choose: np.ndarray) -> None:
        self.budget, self.predict, self.baseline, self.labels, self.choose = budget, predict, baseline, labels, choose

    def measure(self, path: str, excluded: Sequence[str]) -> Step:
        t = time.perf_counter()
        drift = compare(self.predict(path, self.choose), self.baseline[self.choose], self.labels[self.choose])
        step = Step(list(excluded), drift.top1_drop, drift.top5_drop, drift.top1_agreement,
                    self.budget.holds(drift.top1_drop, drift.top5_drop), round(time.perf_counter() - t, 2))
        print(f"budget: {len(excluded):3d} node(s) excluded: top-1 drop {drift.top1_drop:+.2f}, top-5 drop "
              f"{drift.top5_drop:+.2f} points on {len(self.choose)} choose images "
              f"({'within' if step.within else 'over'} {self.budget.top1:g}/{self.budget.top5:g})", file=sys.stderr)
        return step

    def better(self, step: Step, than: Step) -> bool:
        excess = self.budget.excess
        return excess(step.top1_drop, step.top5_drop) < excess(than.top1_drop, than.top5_drop) - 1e-9


def _exclude_until_within(build: Callable[[Sequence[str]], str], judge: _Judge, ranked: List[str], steps: List[Step],
                          best: _Best, deadline: float, max_seconds: float, patience: int) -> _Best:
    """Keep the 1, 2, 3, 4, 6, ... most sensitive nodes out of INT8 until the budget holds, ``patience``
    steps bring nothing better, the ranking or the schedule runs out, or ``deadline`` passes."""
    since_best = 0
    for k in SCHEDULE:
        if k > len(ranked):
            best.stopped = "every ranked node tried"
            return best
        if time.perf_counter() > deadline:
            best.stopped = f"time limit ({max_seconds / 60:.1f} min)"
            return best
        path = build(ranked[:k])
        step = judge.measure(path, ranked[:k])
        steps.append(step)
        if judge.better(step, best.step):
            best, since_best = _Best(step, path), 0
        else:
            since_best += 1
        if step.within:
            return _Best(step, path, f"budget holds with {k} node(s) excluded")
        if since_best >= patience:
            best.stopped = f"no improvement in {patience} steps"
            return best
    best.stopped = "schedule exhausted"
    return best
