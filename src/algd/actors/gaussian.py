"""Tanh-squashed Gaussian actor with automatic entropy tuning (the SAC-Lag / CAL baseline actor, spec §9)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from algd.actors import Actor
from algd.learner.nets import EnsembleMLP, mlp, run_layers
from algd.learner.population import batch_mean, learner_shape, per_row


class GaussianActor(Actor):
    """π(a|s) = tanh(N(μ(s), σ(s)²)) rescaled to the env bounds; MLP trunk (2×256 by default).

    Loss (minimised):  mean[ α·log π(a|s) + E(s, a) ],  a ~ π reparameterised, E the energy
    (e.g. −min Q + λ·(Q̂c − h)); plus the temperature loss −log α·(log π + target_entropy) with target −|A|.
    Deterministic action: tanh(μ(s)).
    """

    def __init__(
        self,
        hidden=(256, 256),
        log_std_min: float = -20.0,
        log_std_max: float = 2.0,
        init_alpha: float = 0.2,
        autotune_alpha: bool = True,
        target_entropy: float | None = None,
        **spec,
    ):
        super().__init__(**spec)  # obs_dim, act_dim, action_low, action_high (the Actor contract)
        if self.population == 1:
            self.net = mlp(self.obs_dim, 2 * self.act_dim, hidden, "relu")
        else:  # one MLP per learner (EnsembleLinear layers): [S, B, obs] → [S, B, 2·act]
            self.net = EnsembleMLP(self.obs_dim, 2 * self.act_dim, hidden, members=self.population).net
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        self.log_alpha = nn.Parameter(
            torch.full(learner_shape(self.population), math.log(init_alpha)), requires_grad=bool(autotune_alpha)
        )
        self.target_entropy = float(-self.act_dim if target_entropy is None else target_entropy)

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def _dist(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_std = run_layers(self.net, obs).chunk(2, dim=-1)
        return mu, log_std.clamp(self.log_std_min, self.log_std_max)

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised env-scale action and its log-density log π(a|s) (shape [B, 1])."""
        mu, log_std = self._dist(obs)
        std = log_std.exp()
        u = mu + std * torch.randn_like(mu)
        # log N(u; μ, σ) − Σ log(1 − tanh(u)²), the latter in the stable form 2·(log 2 − u − softplus(−2u)).
        log_prob = (-0.5 * ((u - mu) / std).square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1, keepdim=True)
        log_prob = log_prob - self.scaler.scale.log().sum()
        return self.scaler(torch.tanh(u)), log_prob

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        if deterministic:
            return self.scaler(torch.tanh(self._dist(obs)[0]))
        return self.sample(obs)[0]

    def target_action(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, log_prob = self.sample(obs)
        return action, -per_row(self.alpha) * log_prob

    def loss(self, obs: torch.Tensor, energy_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        action, log_prob = self.sample(obs)
        energy = energy_fn(obs, action)
        policy_loss = batch_mean(per_row(self.alpha) * log_prob + energy)  # (per learner)
        alpha_loss = -batch_mean(per_row(self.log_alpha) * (log_prob.detach() + self.target_entropy))
        metrics = {
            "loss/policy": policy_loss.detach(),
            "loss/alpha": alpha_loss.detach(),
            "train/alpha": self.alpha,
            "train/entropy": -batch_mean(log_prob.detach()),
            "train/energy": batch_mean(energy.detach()),
        }
        return policy_loss + alpha_loss, metrics  # per learner
