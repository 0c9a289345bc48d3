"""How far one set of outputs is from another: softmax, top-k accuracy, agreement, KL, McNemar,
a bootstrap interval, and :class:`Drift` (all of them for a candidate against its FP32 baseline).

The one implementation used by the runtime (probabilities, the shadow monitor), the frame-input
checks, bench and the device verifier, and calibration's accuracy budget. Figures in percent or
points unless named otherwise. Device-side: numpy only, Python 3.8.
"""
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np


@dataclass
class Accuracy:
    images: int
    top1: float          # percent
    top5: float          # percent

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Drift:
    """A candidate's outputs against the FP32 baseline's, on the same images."""

    images: int
    top1_drop: float               # points (baseline - candidate); positive = candidate worse
    top5_drop: float
    top1_agreement: float          # fraction of images with the same top-1 class
    mean_kl: float                 # mean KL(baseline softmax || candidate softmax), nats
    max_abs_logit_error: float
    mcnemar_p: float               # exact two-sided McNemar test on top-1 correctness
    only_baseline_correct: int     # discordant pairs
    only_candidate_correct: int
    top1_drop_ci95: List[float] = field(default_factory=list)   # paired bootstrap interval, points
    significant: bool = False      # p < 0.05: the drop (or gain) is real at this sample size
    worst_classes: List[Dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _centered(logits: np.ndarray) -> np.ndarray:
    """float64 copy with each row's maximum subtracted: exp() of it cannot overflow at any logit scale."""
    z = np.asarray(logits).astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    return z


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (one row or (N, C)), in float64."""
    z = _centered(logits)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log(softmax) over the last axis, in float64, without taking the log of an underflowed 0."""
    z = _centered(logits)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def topk_correct(logits: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean per image: is the label among the ``k`` highest logits?"""
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return (top == labels[:, None]).any(axis=1)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    labels = np.asarray(labels)
    if len(labels) == 0:
        return Accuracy(0, 0.0, 0.0)
    return Accuracy(images=int(len(labels)), top1=100.0 * float(topk_correct(logits, labels, 1).mean()),
                    top5=100.0 * float(topk_correct(logits, labels, 5).mean()))


def top1_agrees(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Boolean per row of two (N, C) arrays: the same class is first in both."""
    return a.argmax(axis=1) == b.argmax(axis=1)


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int = 5) -> np.ndarray:
    """Per row of two (N, C) arrays: the fraction of ``a``'s ``k`` best classes that are among ``b``'s."""
    top_a, top_b = np.argsort(-a, axis=1)[:, :k], np.argsort(-b, axis=1)[:, :k]
    return (top_a[:, :, None] == top_b[:, None, :]).any(axis=2).sum(axis=1) / float(k)


def kl_per_row(baseline: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """KL(baseline softmax || candidate softmax) of each row of two (N, C) logit arrays, in nats."""
    lp_b, lp_c = log_softmax(baseline), log_softmax(candidate)
    return (np.exp(lp_b) * (lp_b - lp_c)).sum(axis=1)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` vs ``c`` discordant pairs (binomial, p=0.5)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / (1 << n)   # exact ints: 2.0 ** n overflows past n = 1023
    return min(1.0, 2.0 * tail)


def bootstrap_drop_ci(base_ok: np.ndarray, cand_ok: np.ndarray, rounds: int = 2000, seed: int = 0) -> List[float]:
    """95 % paired bootstrap interval of the top-1 drop (points)."""
    rng = np.random.default_rng(seed)
    n = len(base_ok)
    diff = base_ok.astype(np.float64) - cand_ok.astype(np.float64)
    idx = rng.integers(0, n, size=(rounds, n))
    drops = 100.0 * diff[idx].mean(axis=1)
    return [float(np.percentile(drops, 2.5)), float(np.percentile(drops, 97.5))]


def compare(candidate: np.ndarray, baseline: np.ndarray, labels: np.ndarray,
            label_names: Optional[Sequence[str]] = None, worst: int = 5) -> Drift:
    """Drift of ``candidate`` logits against ``baseline`` logits on the same labeled images."""
    if candidate.shape != baseline.shape:
        raise ValueError(f"candidate logits {candidate.shape} and baseline {baseline.shape} differ in shape")
    labels = np.asarray(labels)
    base_acc, cand_acc = accuracy(baseline, labels), accuracy(candidate, labels)
    base_ok = topk_correct(baseline, labels, 1)
    cand_ok = topk_correct(candidate, labels, 1)
    kl = float(kl_per_row(baseline, candidate).mean()) if len(labels) else 0.0
    b = int((base_ok & ~cand_ok).sum())
    c = int((~base_ok & cand_ok).sum())
    p = mcnemar_exact(b, c)
    per_class: List[Dict[str, Any]] = []
    for cls in np.unique(labels):
        m = labels == cls
        drop = 100.0 * float(base_ok[m].mean() - cand_ok[m].mean())
        if drop > 0:
            per_class.append({"class": int(cls), "label": label_names[int(cls)] if label_names else str(int(cls)),
                              "images": int(m.sum()), "top1_drop": drop})
    per_class.sort(key=lambda r: -r["top1_drop"])
    return Drift(images=int(len(labels)), top1_drop=base_acc.top1 - cand_acc.top1,
                 top5_drop=base_acc.top5 - cand_acc.top5,
                 top1_agreement=float(top1_agrees(candidate, baseline).mean()) if len(labels) else 1.0,
                 mean_kl=kl, max_abs_logit_error=float(np.abs(candidate - baseline).max()) if len(labels) else 0.0,
                 mcnemar_p=p, only_baseline_correct=b, only_candidate_correct=c,
                 top1_drop_ci95=bootstrap_drop_ci(base_ok, cand_ok) if len(labels) else [0.0, 0.0],
                 significant=p < 0.05, worst_classes=per_class[:worst])
