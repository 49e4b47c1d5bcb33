"""Actors. Every actor subclasses :class:`Actor` (built by keyword for the env: ``obs_dim``, ``act_dim``,
``action_low``, ``action_high``) and follows one contract, so the LightningModule never branches on the actor type:

- ``act(obs, deterministic)`` → env-scale action (no gradient);
- ``target_action(obs)`` → (a', bonus): a stochastic next action for critic targets and the value added to
  min-Q' (−α·log π for an entropy-regularised actor, 0 otherwise);
- ``loss(obs, energy_fn)`` → (loss, metrics): the actor's whole objective (0-dim; per learner [S] for a
  population), given ``energy_fn(obs, action)`` (per-sample energy, lower is better) built by the LightningModule
  from the critics, λ and the energy; ``action`` may carry leading sample axes ([..., B, act] at the B states
  ``obs``, energy [..., B, 1]), and several actions per state are cheaper in one call than in several;
- ``policy()`` → a TensorDict module (``observation`` → ``action``) for collectors and evaluation that samples,
  or acts deterministically under TorchRL's deterministic exploration type.
"""

from __future__ import annotations

import copy
from itertools import chain

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import nn
from torchrl.envs.utils import ExplorationType, exploration_type


class ActionScaler(nn.Module):
    """Maps a squashed action in [−1, 1] to the env bounds [low, high]."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor):
        super().__init__()
        low, high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        self.register_buffer("scale", (high - low) / 2)
        self.register_buffer("bias", (high + low) / 2)

    def forward(self, squashed: torch.Tensor) -> torch.Tensor:
        return squashed * self.scale + self.bias


class _Policy(TensorDictModuleBase):
    """``observation`` → ``action`` without gradient; deterministic under TorchRL's deterministic exploration types.
    A population's actor (S learners) acts on S envs stepped together: observation [S, obs] → action [S, act].

    Written directly on the TensorDict (not as a ``TensorDictModule``, which converts every output with
    ``TensorDict.from_any``, an import-system lookup per call): the collector calls it once per env step."""

    in_keys, out_keys = ["observation"], ["action"]

    def __init__(self, actor: nn.Module):
        super().__init__()
        self.actor = actor

    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        deterministic = exploration_type() in (
            ExplorationType.DETERMINISTIC,
            ExplorationType.MODE,
            ExplorationType.MEAN,
        )
        obs = tensordict.get("observation")
        population = self.actor.population > 1  # S envs stepped together, one state each: [S, obs] → [S, 1, obs]
        with torch.no_grad():
            action = self.actor.act(obs.unsqueeze(-2) if population else obs, deterministic=deterministic)
        tensordict.set("action", action.squeeze(-2) if population else action)
        return tensordict


def as_policy(actor: nn.Module) -> TensorDictModuleBase:
    """Wrap an actor as a TensorDict policy for TorchRL collectors and ``env.rollout``."""
    return _Policy(actor)


def acting_copy(actor: nn.Module) -> nn.Module:
    """A gradient-free CPU copy of ``actor`` for acting in environments (collectors, evaluation), kept apart from the
    learner's actor so the learner can live on another device and the acting weights change only when refreshed
    with :func:`load_weights_`."""
    acting = copy.deepcopy(actor).to("cpu")
    acting.requires_grad_(False)
    return acting


@torch.no_grad()
def load_weights_(dst: nn.Module, src: nn.Module) -> None:
    """Copy ``src``'s parameters and buffers into ``dst`` in place (any devices; storages such as shared memory
    that collector workers read stay where they are)."""
    for d, s in zip(chain(dst.parameters(), dst.buffers()), chain(src.parameters(), src.buffers()), strict=True):
        d.copy_(s)


class Actor(nn.Module):
    """The base of every actor: made for the env's observation size, action size and action bounds (given by
    keyword, as :func:`algd.data.collectors.env_specs` reads them from the env); owns the scaling of squashed
    actions to the bounds (``scaler``) and the TensorDict policy (``policy()``). ``population`` S > 1: S independent
    actors (one per learner of a population, :mod:`algd.learner.population`) taking [S, B, obs]; their losses are
    the sums of the learners' losses, their metrics per learner ([S])."""

    def __init__(self, *, obs_dim: int, act_dim: int, action_low, action_high, population: int = 1):
        super().__init__()
        self.obs_dim, self.act_dim, self.population = int(obs_dim), int(act_dim), int(population)
        self.scaler = ActionScaler(action_low, action_high)

    def policy(self) -> TensorDictModuleBase:
        return as_policy(self)
