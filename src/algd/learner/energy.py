"""Energies: the per-state Lagrangian in action space that guides the actor (spec §1).

Each energy maps (min-Q, the constraint gap g = Q̂c − h of :func:`algd.learner.constraint.gap`, λ) to a per-sample
value; lower is better for the actor.
"""

from __future__ import annotations

import torch
from torch import nn

from algd import checks, schema


class LagrangianEnergy(nn.Module):
    """Plain Lagrangian:  L(s,a,λ) = −min(Q1,Q2)(s,a) + λ·(Q̂c(s,a) − h)."""

    def forward(self, q: torch.Tensor, g: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        return -q + lam * g

    def active(self, g: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Where the penalty acts on the action (boolean, shaped as g): wherever λ > 0."""
        return (lam > 0).expand_as(g)


class AugmentedLagrangianEnergy(nn.Module):
    """Augmented Lagrangian:  L_A(s,a,λ) = −min(Q1,Q2)(s,a) + (1/(2ρ))·([λ + ρ·(Q̂c(s,a) − h)]_+² − λ²).

    With g = Q̂c − h: the penalty is λg + (ρ/2)g² where λ + ρg ≥ 0, and the constant −λ²/(2ρ) otherwise.
    """

    def __init__(self, rho: float = 1.0):
        super().__init__()
        checks.enforce(schema.AUGMENTED_ENERGY, "energy", rho=rho)
        self.rho = float(rho)

    def forward(self, q: torch.Tensor, g: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        shifted = (lam + self.rho * g).clamp(min=0.0)
        return -q + (shifted.square() - lam.square()) / (2.0 * self.rho)

    def active(self, g: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Where the penalty acts on the action (boolean, shaped as g): λ + ρ·g > 0 (elsewhere it is a constant)."""
        return lam + self.rho * g > 0
