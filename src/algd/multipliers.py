"""Lagrange-multiplier rules (spec §6). λ ≥ 0 always.

A multiplier exposes ``lam`` (a tensor) and ``loss(g)`` where g = Q̂c(s, a_buffer) − h for a batch; a rule with
parameters is stepped by its own optimiser on that loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class LogAdamMultiplier(nn.Module):
    """λ = exp(log λ); Adam on log λ minimises mean(λ·(h − Q̂c)) — ascent on λ·(Q̂c − h) (the reference's rule)."""

    def __init__(self, init_lambda: float = math.log(2.0)):
        super().__init__()
        if init_lambda <= 0:
            raise ValueError(f"multiplier.init_lambda must be > 0 for a log-parameterised λ, got {init_lambda}")
        self.log_lambda = nn.Parameter(torch.tensor(math.log(init_lambda)))

    @property
    def lam(self) -> torch.Tensor:
        return self.log_lambda.exp()

    def loss(self, g: torch.Tensor) -> torch.Tensor:
        return (self.lam * -g.detach()).mean()
