"""Across-seed statistics: percentile-bootstrap interval of the mean, interquartile mean, curves on one frame axis.

Ours rather than ``rliable``'s: the same estimators in a few lines, seeded (a report is reproducible), and no extra
dependencies to fit under the numpy pin of safety-gymnasium.
"""

from __future__ import annotations

import numpy as np

IQM_MIN_SEEDS = 5
RESAMPLES = 2000


def bootstrap_ci(x, resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``x`` (seeded, so a report is reproducible)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    means = x[np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def iqm(x) -> float:
    """Interquartile mean: the mean after dropping the lowest and highest quarter (⌊n/4⌋ values each side)."""
    x = np.sort(np.asarray(x, dtype=float))
    cut = len(x) // 4
    return float(x[cut : len(x) - cut].mean())


def aggregate(x) -> dict[str, float]:
    """Across-seed statistics of one quantity: n, mean, 95 % bootstrap interval, IQM (NaN under 5 seeds)."""
    x = np.asarray(x, dtype=float)
    lo, hi = bootstrap_ci(x)
    return {
        "n": len(x),
        "mean": float(x.mean()),
        "lo": lo,
        "hi": hi,
        "iqm": iqm(x) if len(x) >= IQM_MIN_SEEDS else float("nan"),
    }


def align(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Curves of several seeds on one frame axis (the union of their frames): each run is linearly interpolated
    inside its own frame range and NaN outside it, so a shorter (unfinished) run stops where its data stops.
    Returns (frames, values of shape [runs, frames])."""
    frames = np.unique(np.concatenate([c[:, 0] for c in curves]))
    rows = [
        np.where((frames >= c[0, 0]) & (frames <= c[-1, 0]), np.interp(frames, c[:, 0], c[:, 1]), np.nan)
        for c in curves
    ]
    return frames, np.array(rows)
