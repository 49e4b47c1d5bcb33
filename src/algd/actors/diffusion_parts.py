"""The diffusion actors' building blocks (spec §3, §4): noise schedules, the Monte-Carlo score target and the
network φθ / ε̂ evaluated at every chain step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from algd.learner.nets import EnsembleLinear, fp32_layer, linear_part


# ------------------------------------------------------------------------------------------------------ schedules
def ddpm_schedule(
    steps: int, beta_min: float = 1e-4, beta_max: float = 0.02, numerics: str = "exact"
) -> dict[str, torch.Tensor]:
    """Linear DDPM schedule over K = ``steps`` (index t = 0 … K−1), returned as float32.

    β_t = linspace(β_min, β_max, K);  ᾱ_t = Π_{s≤t}(1 − β_s);  ᾱ_{−1} = 1;  σ_t = sqrt(1 − ᾱ_t)
    posterior mean μ = c1·x̂0 + c2·x_t,  c1 = β_t·sqrt(ᾱ_{t−1})/(1 − ᾱ_t),  c2 = (1 − ᾱ_{t−1})·sqrt(1 − β_t)/(1 − ᾱ_t)
    posterior variance β̃_t = β_t·(1 − ᾱ_{t−1})/(1 − ᾱ_t);  score-target noise level σ_t (``mc_sigma``)

    ``numerics="exact"`` computes in float64. ``"reference"`` computes as the authors' code does: in float32, with
    ε = 1e-8 added to ᾱ_t under the square root of x̂0's denominator, to 1 − ᾱ_t in the denominators of c1, c2 and
    β̃_t, to β̃_t under the square root of the posterior std, and σ_t = sqrt(1 − ᾱ_t + ε) for the score target. At
    t = 0, 1 − ᾱ_0 = β_min = 1e-4 is a float32 cancellation: c1 there is off by ≈ 1e-4 relative from the exact 1.
    """
    if steps < 1:
        raise ValueError(f"actor.steps must be >= 1, got {steps}")
    dtype, eps = (torch.float64, 0.0) if numerics == "exact" else (torch.float32, 1e-8)
    betas = torch.linspace(beta_min, beta_max, steps, dtype=dtype)
    alpha_bar = torch.cumprod(1.0 - betas, 0)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=dtype), alpha_bar[:-1]])
    denominator = 1.0 - alpha_bar + eps
    variance = betas * (1.0 - alpha_bar_prev) / denominator
    out = {
        "betas": betas,
        "alpha_bar": alpha_bar,
        "sigma": (1.0 - alpha_bar).sqrt(),
        "mc_sigma": (1.0 - alpha_bar + eps).sqrt(),
        "sqrt_alpha_bar": (alpha_bar + eps).sqrt(),
        "c1": alpha_bar_prev.sqrt() * betas / denominator,
        "c2": (1.0 - betas).sqrt() * (1.0 - alpha_bar_prev) / denominator,
        "posterior_std": (variance + eps).sqrt(),
    }
    return {k: v.float() for k, v in out.items()}


def ve_sigmas(steps: int, sigma_min: float = 0.01, sigma_max: float = 1.0) -> torch.Tensor:
    """VE-SDE noise levels σ_t = σ_min·(σ_max/σ_min)^(t/(K−1)), t = 0 … K−1 (needs K ≥ 2)."""
    if steps < 2:
        raise ValueError(f"actor.steps must be >= 2 for diffusion_ve, got {steps}")
    t = torch.arange(steps, dtype=torch.float64)
    return (sigma_min * (sigma_max / sigma_min) ** (t / (steps - 1))).float()


# ------------------------------------------------------------------------------------------------- score target
def mc_score(
    latents: torch.Tensor,
    sigma: torch.Tensor | float,
    energy_and_grad_fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    n: int,
    beta: float = 1.0,
) -> torch.Tensor:
    """Self-normalised Monte-Carlo score of the noised Boltzmann density exp(−E/β) ⊛ N(0, σ²) at ``latents``.

        a_i = x + σ·ε_i,  ε_i ~ N(0, I),  i = 1 … n
        w   = softmax_i(−E(a_i)/β)
        φ*  = −(1/β)·Σ_i w_i·∇E(a_i)

    ``latents`` is [..., A] (B rows, or [S, B] for a population); ``sigma`` a float or [..., 1];
    ``energy_and_grad_fn`` gets all perturbations in one batch [n·rows, A] (block i holds copy i of the rows) and
    returns (E [n·rows] or [n·rows, 1], ∇E [n·rows, A]). Returns φ* [..., A], detached.
    """
    lead, a_dim = latents.shape[:-1], latents.shape[-1]
    noise = torch.randn(n, *lead, a_dim, dtype=latents.dtype, device=latents.device)
    perturbed = latents.detach().unsqueeze(0) + torch.as_tensor(sigma, dtype=latents.dtype) * noise
    energy, grad = energy_and_grad_fn(perturbed.reshape(-1, a_dim))
    weights = torch.softmax(-energy.detach().reshape(n, *lead, 1) / beta, dim=0)
    return (-(weights * grad.detach().reshape(n, *lead, a_dim)).sum(0) / beta).detach()


# ------------------------------------------------------------------------------------------------------ network
class DiffusionNet(nn.Module):
    """[s, a_t = tanh(x_t), emb(t)] → MLP trunk (ReLU) → ε-head and φ-head (each ``act_dim`` outputs).

    ``emb`` is a learned ``nn.Embedding(K, time_dim)``; the ε-head is optional (the VE sampler does not use it).
    ``population`` S > 1: S independent nets (one per learner of a population) with every layer an
    :class:`~algd.learner.nets.EnsembleLinear`; inputs and outputs carry the learner axis first ([S, B, ·]).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        steps: int,
        hidden=(128, 128, 128),
        time_dim: int = 16,
        eps_head: bool = True,
        population: int = 1,
    ):
        super().__init__()
        self.population, self.time_dim = int(population), int(time_dim)
        one = self.population == 1

        def linear(a: int, b: int) -> nn.Module:
            return nn.Linear(a, b) if one else EnsembleLinear(self.population, a, b)

        if one:
            self.embed = nn.Embedding(steps, time_dim)
        else:  # nn.Embedding's N(0, 1) init, per learner
            self.embed_weight = nn.Parameter(torch.randn(self.population, steps, time_dim))
        layers: list[nn.Module] = []
        in_dim = obs_dim + act_dim + time_dim
        self.in_dim = in_dim
        for width in hidden:
            layers += [linear(in_dim, width), nn.ReLU()]
            in_dim = width
        self.trunk = nn.Sequential(*layers)
        self.eps_head = linear(in_dim, act_dim) if eps_head else None
        self.phi_head = linear(in_dim, act_dim)

    def forward(self, obs: torch.Tensor, squashed: torch.Tensor, t: torch.Tensor):
        """``t``: a 0-dim index (whole batch) or one index per row. Returns (ε̂ or None, φθ)."""
        return self.from_base(self.base(self.state_features(obs), t), squashed)

    # Fast path for the chain, which evaluates the net K times at the same states: the first layer splits as
    # [s, a, emb(t)]·W1ᵀ + b1 = (s·W1_sᵀ + b1) + emb(t)·W1_tᵀ + a·W1_aᵀ. The state part is computed once per chain,
    # the time part once per index, and each step multiplies only the act_dim action columns.
    def state_features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(state part of the first layer, bias included, [..., H]; time part for every index [K, H]; population:
        [S, B, H] and [S, K, H])."""
        first, d = self.trunk[0], obs.shape[-1]
        embed = self.embed.weight if self.population == 1 else self.embed_weight
        return (
            linear_part(first, obs, 0, d, first.bias),
            linear_part(first, embed, self.in_dim - self.time_dim, self.in_dim),
        )

    @staticmethod
    def base(features: tuple[torch.Tensor, torch.Tensor], t: torch.Tensor) -> torch.Tensor:
        """The first layer without its action part at index ``t`` (0-dim, or one index per row)."""
        state, time = features
        if time.dim() == 2:
            return state + time[t]
        if t.dim() == 0:  # population: [S, K, H] at one index for every row
            return state + time[:, t].unsqueeze(1)
        return state + time[torch.arange(time.shape[0], device=t.device).unsqueeze(1), t]

    def from_base(self, base: torch.Tensor, squashed: torch.Tensor):
        """(ε̂ or None, φθ) from the first layer's state and time part ``base`` (:meth:`base`) and the action."""
        first, a = self.trunk[0], squashed.shape[-1]
        d = self.in_dim - self.time_dim - a
        h = linear_part(first, squashed, d, d + a, base)  # base + a·W1_aᵀ in one addmm
        for i in range(1, len(self.trunk)):
            h = self.trunk[i](h)
        eps = fp32_layer(self.eps_head, h) if self.eps_head is not None else None
        return eps, fp32_layer(self.phi_head, h)
