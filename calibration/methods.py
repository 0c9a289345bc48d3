"""Activation ranges (amax) from histograms: max, percentile, entropy (KL) and mse.

All four read the same :class:`calibration.stats.TensorHistogram`, so comparing methods costs no
extra pass over the images. Symmetric INT8 throughout (scale = amax / 127, zero point 0), as
TensorRT's explicit and implicit INT8 use it.

- ``max``: the exact largest |x| seen (what modelopt's ``max`` computes).
- ``percentile-P``: the P-th percentile of |x| (linear inside the bin).
- ``entropy``: TensorRT's entropy calibration (IInt8EntropyCalibrator2, Migacz, GTC 2017): the
  threshold whose 128-level quantized distribution has the least KL divergence from the clipped
  reference distribution, over a 2048-bin histogram up to the largest value.
- ``mse``: the amax minimising the squared error of quantize-dequantize over the histogram
  (rounding below amax, clipping above).
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Set

import numpy as np

from inception_deploy.calibration.stats import TensorHistogram
from inception_deploy.pipeline.errors import UserError

PERCENTILES = ("99.9", "99.99", "99.999")
METHODS = ("max", "entropy", "mse") + tuple("percentile-" + p for p in PERCENTILES)
ENTROPY_BINS = 2048
QUANT_LEVELS = 128
INT8_MAX = 127


@dataclass(frozen=True)
class Method:
    name: str                      # as written in manifests and on the command line
    percentile: Optional[float] = None

    @classmethod
    def parse(cls, text: str) -> "Method":
        text = text.strip().lower()
        m = re.fullmatch(r"percentile[-_:=]?(\d+(?:\.\d+)?)", text)
        if m:
            p = float(m.group(1))
            if not 50.0 < p <= 100.0:
                raise UserError(f"percentile {p} is out of range; expected e.g. percentile-99.99")
            return cls("percentile-" + m.group(1), p)
        if text in ("max", "entropy", "mse"):
            return cls(text)
        raise UserError(f"unknown calibration method {text!r}; expected one of {', '.join(METHODS)} "
                        "(or percentile-<P>, e.g. percentile-99.95)")

    def amax(self, hist: TensorHistogram) -> float:
        if hist.elements == 0 or hist.amax == 0.0:
            return 0.0
        if self.name == "max":
            return hist.amax
        if self.percentile is not None:
            return percentile_amax(hist, self.percentile)
        if self.name == "entropy":
            return entropy_amax(hist)
        return mse_amax(hist)


def _trimmed(hist: TensorHistogram, max_bins: int) -> "tuple[np.ndarray, float]":
    """Counts up to the last non-empty bin, merged so there are at most ``max_bins``; bin width."""
    counts = hist.counts
    last = int(np.flatnonzero(counts)[-1]) + 1 if counts.any() else 1
    counts = counts[:last]
    width = hist.bin_width
    factor = 1
    while len(counts) > max_bins * factor:
        factor *= 2
    if factor > 1:
        pad = (-len(counts)) % factor
        counts = np.concatenate([counts, np.zeros(pad, dtype=counts.dtype)]).reshape(-1, factor).sum(axis=1)
        width *= factor
    return counts.astype(np.float64), width


def percentile_amax(hist: TensorHistogram, percentile: float) -> float:
    counts = hist.counts.astype(np.float64)
    cum = np.cumsum(counts)
    target = cum[-1] * percentile / 100.0
    i = int(np.searchsorted(cum, target, side="left"))
    below = cum[i - 1] if i > 0 else 0.0
    frac = (target - below) / counts[i] if counts[i] > 0 else 1.0
    return float(min(hist.amax, (i + frac) * hist.bin_width))


def entropy_amax(hist: TensorHistogram, bins: int = ENTROPY_BINS, levels: int = QUANT_LEVELS) -> float:
    """KL-minimising threshold (coarse grid, then every bin around the best)."""
    counts, width = _trimmed(hist, bins)
    n = len(counts)
    if n <= levels:
        return hist.amax
    # the exact zeros of a post-ReLU tensor (often half of it) pile up in bin 0; left there, the KL
    # term of that one bin favours tiny thresholds. NVIDIA's pytorch-quantization replaces it by its
    # neighbour's count before the search; so does this.
    counts = counts.copy()
    counts[0] = counts[1]
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])   # tail[i] = sum(counts[i:])

    def kl(i: int) -> float:
        p = counts[:i].copy()
        p[-1] += tail[i]
        edges = (np.arange(levels + 1) * i) // levels
        nonzero = p > 0
        chunk_sum = np.add.reduceat(counts[:i], edges[:-1])
        chunk_nz = np.add.reduceat(nonzero.astype(np.float64), edges[:-1])
        per_bin = np.where(chunk_nz > 0, chunk_sum / np.maximum(chunk_nz, 1), 0.0)
        q = np.repeat(per_bin, np.diff(edges)) * nonzero
        p_sum, q_sum = p.sum(), q.sum()
        if q_sum == 0:
            return np.inf
        p, q = p / p_sum, q / q_sum
        m = p > 0
        with np.errstate(divide="ignore"):
            return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))

    step = max(1, (n - levels) // 64)
    coarse = list(range(levels, n + 1, step))
    if coarse[-1] != n:
        coarse.append(n)
    divergences = [kl(i) for i in coarse]
    best = coarse[int(np.argmin(divergences))]
    fine = range(max(levels, best - step + 1), min(n, best + step - 1) + 1)
    if step > 1:
        best = min(fine, key=kl)
    return float(min(hist.amax, (best + 0.5) * width))


def mse_amax(hist: TensorHistogram, bins: int = ENTROPY_BINS, candidates: int = 128) -> float:
    """amax minimising sum(count * (x - dequant(quant(x)))^2) over the bin centres.

    Coarse grid of ``candidates`` values up to the largest value, then the same number between the
    neighbours of the best; the error is computed exactly for each bin centre (rounding and
    clipping), so exact zeros (half of a post-ReLU tensor) correctly cost nothing.
    """
    counts, width = _trimmed(hist, bins)
    centers = (np.arange(len(counts)) + 0.5) * width
    keep = counts > 0
    counts, centers = counts[keep], centers[keep]
    top = min(hist.amax, len(keep) * width)

    def errors(grid: np.ndarray) -> np.ndarray:
        step = grid[:, None] / INT8_MAX
        q = np.minimum(np.round(centers[None, :] / step), INT8_MAX) * step
        return ((q - centers[None, :]) ** 2 * counts[None, :]).sum(axis=1)

    grid = np.linspace(top / candidates, top, candidates)
    best = int(np.argmin(errors(grid)))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, candidates - 1)]
    fine = np.linspace(lo, hi, candidates)
    return float(fine[int(np.argmin(errors(fine)))])


# -- shared-scale groups (Concat inputs and output) --------------------------------------------

def concat_groups(model) -> List[Set[str]]:  # type: ignore[no-untyped-def]
    """Tensors that must share one scale: every Concat's inputs and output, joined transitively.

    TensorRT runs an INT8 Concat without reformatting only when its inputs and output share a scale
    (what modelopt's ``concat_elimination`` pass arranges for the quantized ones). The Concat output
    holds exactly its inputs' values, so the group's merged histogram is the output's own.
    """
    parent: Dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    inits = {i.name for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        members = [t for t in list(node.input) + list(node.output) if t and t not in inits]
        for t in members[1:]:
            parent[find(t)] = find(members[0])
    groups: Dict[str, Set[str]] = {}
    for t in list(parent):
        groups.setdefault(find(t), set()).add(t)
    return [g for g in groups.values() if len(g) > 1]


def compute_amax(method: Method, hists: Mapping[str, TensorHistogram], groups: Sequence[Set[str]] = ()
                 ) -> Dict[str, float]:
    """amax per tensor; members of a group get the amax of the group's merged histogram."""
    amax: Dict[str, float] = {}
    grouped: Set[str] = set()
    for group in groups:
        members = [t for t in sorted(group) if t in hists]
        if not members:
            continue
        merged = hists[members[0]].merged(hists[t] for t in members[1:])
        value = method.amax(merged)
        for t in members:
            amax[t] = value
        grouped.update(members)
    for name, hist in hists.items():
        if name not in grouped:
            amax[name] = method.amax(hist)
    return amax


def summarize_amax(amax: Mapping[str, float], hists: Mapping[str, TensorHistogram],
                   tensors: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """What a manifest keeps: ranges, and how much of the observed range each method clips."""
    names = [t for t in (tensors or list(amax)) if t in amax and t in hists]
    if not names:
        return {"tensors": 0}
    values = np.array([amax[t] for t in names])
    ratio = np.array([amax[t] / hists[t].amax if hists[t].amax else 1.0 for t in names])
    order = np.argsort(ratio)
    return {
        "tensors": len(names),
        "amax_min": float(values.min()), "amax_median": float(np.median(values)), "amax_max": float(values.max()),
        "scale_min": float(values.min() / INT8_MAX), "scale_max": float(values.max() / INT8_MAX),
        "clipped_tensors": int((ratio < 0.999999).sum()),
        "amax_over_max_median": float(np.median(ratio)),
        "most_clipped": [{"tensor": names[i], "amax": float(values[i]), "max_seen": hists[names[i]].amax}
                         for i in order[:5] if ratio[i] < 0.999999],
    }
