"""The constraint, in one place (spec §1, §2, §6): the risk-adjusted cost value Q̂c, its target h, the gap
g = Q̂c − h that the energy penalises and the multiplier follows, and the logged violation mean[g]₊."""

from __future__ import annotations

import torch

from algd.learner.population import batch_mean


def risk_adjusted(qc: torch.Tensor, k: float) -> torch.Tensor:
    """Q̂c = mean_e Qc_e + k·std_e Qc_e over the ensemble axis 0 (std := 0 for a single member)."""
    if qc.shape[0] == 1 or k == 0:
        return qc.mean(0)
    return qc.mean(0) + k * qc.std(0)


def per_step_cost_target(cost_limit: float, gamma: float, episode_length: int, discounted: bool = False) -> float:
    """h, the target of Q̂c (an expected γ-discounted sum of future costs, "Q units").

    An undiscounted episode limit d (Safety-Gym) is spread evenly over the T steps and discounted:
    h = d·(1 − γ^T) / ((1 − γ)·T), which is d itself at γ = 1. A limit that already is a γ-discounted episode sum
    (``discounted``: the velocity tasks of the paper protocol, spec §2) is in Q units as it stands: h = D."""
    if discounted or gamma == 1.0:
        return float(cost_limit)
    return cost_limit * (1.0 - gamma**episode_length) / ((1.0 - gamma) * episode_length)


def gap(qc: torch.Tensor, k: float, h: float) -> torch.Tensor:
    """g = Q̂c − h for ensemble values ``qc`` [E, ..., 1] (positive: the constraint is violated there)."""
    return risk_adjusted(qc, k) - h


def violation(g: torch.Tensor) -> torch.Tensor:
    """mean[g]₊ over the batch (per learner of a population), the logged ``lagrange/violation``."""
    return batch_mean(g.clamp(min=0))
