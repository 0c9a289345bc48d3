"""Temporal smoothing of class probabilities: an exponential moving average over frames.

A camera classifier flickers between near-tied classes from frame to frame; averaging the
probabilities (not the labels) over recent frames steadies the top-1 while a real change still
shows within a few frames: with weight ``alpha`` on the newest frame, a new scene dominates after
about ``1 / alpha`` frames. ``alpha = 1`` is no smoothing. Device-side, Python 3.8.
"""
from typing import Optional

import numpy as np


class ProbabilityEMA:
    def __init__(self, alpha: float = 1.0) -> None:
        if not 0.0 < float(alpha) <= 1.0:
            raise ValueError("smoothing alpha must be in (0, 1] (1: none), got %r" % (alpha,))
        self.alpha = float(alpha)
        self.state: Optional[np.ndarray] = None

    def update(self, probabilities: np.ndarray) -> np.ndarray:
        """The smoothed probabilities after this frame's (a new array; the input is not changed)."""
        p = np.asarray(probabilities, dtype=np.float64)
        if self.state is None or self.state.shape != p.shape or self.alpha == 1.0:
            self.state = p.copy()
        else:
            self.state = self.alpha * p + (1.0 - self.alpha) * self.state
        return self.state.copy()

    def reset(self) -> None:
        self.state = None
