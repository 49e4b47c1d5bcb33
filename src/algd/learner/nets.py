"""Network building blocks: a plain MLP and a batched ensemble of MLPs (one matmul per layer for all members)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh, "elu": nn.ELU}


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def fp32_layer(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` in float32, also under autocast: the networks' output layers (Q values, ε̂, φθ, the Gaussian's
    μ and log σ) stay full precision in ``trainer.precision=bf16-mixed``, so targets, TD errors and the chain's
    latents carry fp32 values; only the hidden layers' matmuls run in bf16."""
    if torch.is_autocast_enabled(x.device.type):
        with torch.autocast(x.device.type, enabled=False):
            return layer(x.float())
    return layer(x)


def run_layers(layers: nn.Sequential, x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """``layers[start:](x)`` with the last layer in float32 (:func:`fp32_layer`)."""
    for i in range(start, len(layers) - 1):
        x = layers[i](x)
    return fp32_layer(layers[-1], x)


def mlp(in_dim: int, out_dim: int, hidden: tuple[int, ...] | list[int], act: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(in_dim, width), activation(act)]
        in_dim = width
    layers.append(nn.Linear(in_dim, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers evaluated with one batched matmul: [M, ..., in] → [M, ..., out]."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            return torch.baddbmm(self.bias, x, self.weight)
        flat = torch.baddbmm(self.bias, x.reshape(x.shape[0], -1, x.shape[-1]), self.weight)
        return flat.view(*x.shape[:-1], flat.shape[-1])


def linear_part(layer: nn.Module, x: torch.Tensor, start: int, stop: int, bias=None) -> torch.Tensor:
    """x·W + bias with only the input columns start:stop of ``layer``'s weight: an ``nn.Linear`` (x [..., k]) or an
    :class:`EnsembleLinear` (x [M, N, k], one leading axis per member; ``bias`` [M, 1 or N, out])."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight[:, start:stop], bias)
    w = layer.weight[:, start:stop]
    return torch.bmm(x, w) if bias is None else torch.baddbmm(bias, x, w)


class EnsembleMLP(nn.Module):
    """E independent MLPs run as one batched module, for each of ``population`` independent learners (seeds).

    ``population`` 1: input [B, in] (shared by the members) or [E, B, in]; output [E, B, out].
    ``population`` S > 1: input [S, B, in] (one batch per learner, shared by its E members); output [E, S, B, out].
    Member e of learner s is weight row e·S + s.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 1,
        hidden: tuple[int, ...] | list[int] = (256, 256),
        members: int = 2,
        act: str = "relu",
        population: int = 1,
    ):
        super().__init__()
        self.members, self.act, self.population = int(members), act, int(population)
        rows = self.members * self.population
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [EnsembleLinear(rows, a, b), activation(act)]
        layers.append(EnsembleLinear(rows, dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in] → [E, B, in] (a view); [S, B, in] → [E·S, B, in] (population)."""
        if self.population == 1:
            return x.unsqueeze(0).expand(self.members, *x.shape) if x.dim() == 2 else x
        return x.unsqueeze(0).expand(self.members, *x.shape).reshape(-1, *x.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = run_layers(self.net, self._rows(x))
        return out if self.population == 1 else out.view(self.members, *x.shape[:-1], out.shape[-1])


class QEnsemble(EnsembleMLP):
    """Q(s, a) for E members: [B, obs], [B, act] → [E, B, 1] (population S: [S, B, ·] → [E, S, B, 1])."""

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([obs, action], dim=-1))

    # Fast path for many actions per state (the actor's energy): the first layer splits as
    # [s, a]·W1 + b1 = (s·W1_s + b1) + a·W1_a, so the state part is computed once per state and reused.
    def state_features(self, obs: torch.Tensor) -> torch.Tensor:
        """State part of the first layer, bias included: [B, obs] → [E, B, H1] ([S, B, obs] → [E·S, B, H1])."""
        first = self.net[0]
        return torch.baddbmm(first.bias, self._rows(obs), first.weight[:, : obs.shape[-1]])

    def from_features(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q for actions [..., B, act] (leading sample axes share the states of ``features`` [E, B, H1]):
        → [E, ..., B, 1], equal to ``forward(obs, action)`` for every sample. Population S: actions [..., S, B, act]
        (the learner axis right before the batch axis) → [E, ..., S, B, 1]."""
        first, (rows, b, width) = self.net[0], features.shape
        e, s, a = self.members, self.population, action.shape[-1]
        lead = action.shape[:-2] if s == 1 else action.shape[:-3]
        if s == 1:
            flat = action.reshape(1, -1, a).expand(e, -1, -1)
        else:  # learner s's actions for its E members: rows e·S + s
            flat = action.movedim(-3, 0).reshape(1, s, -1, a).expand(e, -1, -1, -1).reshape(rows, -1, a)
        pre = torch.bmm(flat, first.weight[:, -a:]).view(rows, *lead, b, width)
        pre = pre + features.view(rows, *([1] * len(lead)), b, width)
        out = run_layers(self.net, pre.view(rows, -1, width), start=1)
        if s == 1:
            return out.view(e, *lead, b, out.shape[-1])
        return out.view(e, s, *lead, b, out.shape[-1]).movedim(1, -3)


def polyak_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← (1 − τ)·θ' + τ·θ for every parameter, in one fused call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
