"""Network building blocks: a plain MLP and a batched ensemble of MLPs (one matmul per layer for all members)."""

from __future__ import annotations

import math

import torch
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
    """``members`` independent linear layers evaluated with one batched matmul: [E, B, in] → [E, B, out]."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """E independent MLPs run as one batched module. Input [B, in] (shared) or [E, B, in]; output [E, B, out]."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int = 1,
        hidden: tuple[int, ...] | list[int] = (256, 256),
        members: int = 2,
        act: str = "relu",
    ):
        super().__init__()
        self.members, self.act = int(members), act
        dims = [in_dim, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [EnsembleLinear(self.members, a, b), activation(act)]
        layers.append(EnsembleLinear(self.members, dims[-1], out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, *x.shape)
        return run_layers(self.net, x)


class QEnsemble(EnsembleMLP):
    """Q(s, a) for E members: [B, obs], [B, act] → [E, B, 1]."""

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([obs, action], dim=-1))

    # Fast path for many actions per state (the actor's energy): the first layer splits as
    # [s, a]·W1 + b1 = (s·W1_s + b1) + a·W1_a, so the state part is computed once per state and reused.
    def state_features(self, obs: torch.Tensor) -> torch.Tensor:
        """State part of the first layer, bias included: [B, obs] → [E, B, H1]."""
        first = self.net[0]
        return torch.baddbmm(first.bias, obs.expand(self.members, *obs.shape), first.weight[:, : obs.shape[-1]])

    def from_features(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q for actions [..., B, act] (leading sample axes share the states of ``features`` [E, B, H1]):
        → [E, ..., B, 1], equal to ``forward(obs, action)`` for every sample."""
        first, (e, b, width) = self.net[0], features.shape
        lead = action.shape[:-2]
        flat = action.reshape(1, -1, action.shape[-1]).expand(e, -1, -1)
        pre = torch.bmm(flat, first.weight[:, -action.shape[-1] :]).view(e, *lead, b, width)
        pre = pre + features.view(e, *([1] * len(lead)), b, width)
        out = run_layers(self.net, pre.view(e, -1, width), start=1)
        return out.view(e, *lead, b, out.shape[-1])


def polyak_(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← (1 − τ)·θ' + τ·θ for every parameter, in one fused call."""
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
