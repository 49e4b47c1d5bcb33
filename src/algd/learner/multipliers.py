"""Lagrange-multiplier rules (spec §6). λ ≥ 0 always.

Every rule exposes ``lam`` (a 0-dim tensor; [S] for a population of S learners, :mod:`algd.learner.population`) and
``update(g, optimizer)`` where g = Q̂c(s, a_buffer) − h over a batch of replay transitions ([B, 1], or [S, B, 1]);
``update`` returns the value it logs (per learner). Rules with parameters (``log_adam``) are stepped by
the optimiser the learner built for them; the others update their state in place and get ``optimizer=None``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from algd.learner.population import batch_mean, learner_shape, per_row


class LogAdamMultiplier(nn.Module):
    """λ = exp(log λ); Adam on log λ minimises mean(λ·(h − Q̂c)) — ascent on λ·(Q̂c − h) (the reference's rule)."""

    def __init__(self, init_lambda: float = math.log(2.0), population: int = 1):
        super().__init__()
        if init_lambda <= 0:
            raise ValueError(f"multiplier.init_lambda must be > 0 for a log-parameterised λ, got {init_lambda}")
        self.log_lambda = nn.Parameter(torch.full(learner_shape(population), math.log(init_lambda)))

    @property
    def lam(self) -> torch.Tensor:
        return self.log_lambda.exp()

    def loss(self, g: torch.Tensor) -> torch.Tensor:
        """Per learner (0-dim, or [S])."""
        return batch_mean(per_row(self.lam) * -g.detach())

    def update(self, g: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss(g)
        loss.sum().backward()
        optimizer.step()
        return loss.detach()


class _StateMultiplier(nn.Module):
    """A rule whose λ is a buffer updated in place (saved in checkpoints with the module)."""

    def __init__(self, init_lambda: float, population: int = 1):
        super().__init__()
        if init_lambda < 0:
            raise ValueError(f"multiplier.init_lambda must be >= 0, got {init_lambda}")
        self.register_buffer("_lam", torch.full(learner_shape(population), float(init_lambda)))

    @property
    def lam(self) -> torch.Tensor:
        return self._lam


class ALMMultiplier(_StateMultiplier):
    """Textbook augmented-Lagrangian step, once per gradient update:  λ ← [λ + η·ρ·mean(Q̂c − h)]_+ ."""

    def __init__(self, init_lambda: float = 0.6931, eta: float = 1e-3, rho: float = 1.0, population: int = 1):
        super().__init__(init_lambda, population)
        if eta <= 0 or rho <= 0:
            raise ValueError(f"multiplier.eta and multiplier.rho must be > 0, got eta={eta}, rho={rho}")
        self.eta, self.rho = float(eta), float(rho)

    def update(self, g: torch.Tensor, optimizer=None) -> torch.Tensor:
        step = self.eta * self.rho * batch_mean(g.detach())
        self._lam.copy_((self._lam + step).clamp(min=0.0))
        return step


class PIDMultiplier(_StateMultiplier):
    """PID Lagrangian (Stooke et al., 2020) on the error e = mean(Q̂c − h), once per gradient update:

    I ← [I + K_i·e]_+,   λ = [K_p·e + I + K_d·(e − e_prev)_+]_+ ,   I₀ = λ₀.
    """

    def __init__(
        self, init_lambda: float = 0.6931, kp: float = 0.01, ki: float = 1e-3, kd: float = 0.0, population: int = 1
    ):
        super().__init__(init_lambda, population)
        if min(kp, ki, kd) < 0:
            raise ValueError(f"multiplier gains must be >= 0, got kp={kp}, ki={ki}, kd={kd}")
        self.kp, self.ki, self.kd = float(kp), float(ki), float(kd)
        self.register_buffer("integral", torch.full(learner_shape(population), float(init_lambda)))
        self.register_buffer("prev_error", torch.zeros(learner_shape(population)))

    def update(self, g: torch.Tensor, optimizer=None) -> torch.Tensor:
        error = batch_mean(g.detach())
        self.integral.copy_((self.integral + self.ki * error).clamp(min=0.0))
        derivative = (error - self.prev_error).clamp(min=0.0)
        self._lam.copy_((self.kp * error + self.integral + self.kd * derivative).clamp(min=0.0))
        self.prev_error.copy_(error)
        return error
