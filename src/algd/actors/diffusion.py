"""Diffusion actors (spec §3–§5, §8): a K-step reverse chain in a pre-tanh latent x, guided by a learned score φθ.

Two samplers share one base class and differ only in their noise schedule and step rule:

- ``DiffusionActor`` (``actor=diffusion``, the default): DDPM-style posterior-mean chain plus normalised guidance;
- ``DiffusionVEActor`` (``actor=diffusion_ve``): VE-SDE chain driven by φθ alone.

Index convention (spec §8.3): at loop index t = K−1 … 0 the network is evaluated at the *current* latent x_t with
the 0-based time-embedding index t. The chain input (the spec's "x_K ~ N(0, σ²)") is thus the latent evaluated at
index K−1, and the output of the step at t = 0 is the final latent a⁰; the action is tanh(a⁰) rescaled to the env
bounds. The score target φ* and the score loss use the same (x_τ, τ) pairs that sampling evaluates
(``tau_index=input``; ``output``, the reference code's choice, pairs τ with the latent the step at τ produces).

Where the reference code (github Wenxuan52/ALGD) behaves otherwise, a switch selects its behaviour (docs/parity.md):
``score_space`` (perturb the latent, ours, or the action, theirs), ``score_grad_into_chain`` (whether the score loss
back-propagates into the chain through x_τ), ``tau_index``, and for the DDPM sampler ``eps_input`` (the ε-head
sees tanh(x_t), ours, or the latent x_t in a second trunk pass, theirs), ``x0_clip``, ``schedule`` (exact, or the
reference's float32 arithmetic with its 1e-8 regularisers) and ``guidance_eps``. ``experiment=algd_reference`` sets
them all to the reference's values.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import record_function

from algd import checks, schema
from algd.actors import Actor
from algd.actors.diffusion_parts import DiffusionNet, ddpm_schedule, mc_score, ve_sigmas
from algd.learner.population import batch_mean

EnergyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------------------------------- base actor
class _DiffusionBase(Actor):
    """Shared chain, action interface, score target and loss. Subclasses set ``sigma`` (the σ_τ buffer used for
    the score-target perturbations), ``init_std`` (std of the chain input) and implement ``step``."""

    init_std: float
    uses_eps: bool = True
    eps_input: str = "action"  # what the ε-head sees besides s and emb(t): tanh(x_t) (one trunk pass) or x_t itself

    def __init__(
        self,
        steps: int = 5,
        hidden=(128, 128, 128),
        time_dim: int = 16,
        mc_samples: int = 4,
        beta_temperature: float = 1.0,
        c_energy: float = 1.0,
        c_score: float = 0.1,
        score_space: str = "latent",
        score_grad_into_chain: bool = False,
        tau_index: str = "input",
        **spec,
    ):
        super().__init__(**spec)  # obs_dim, act_dim, action_low, action_high (the Actor contract)
        self.steps = int(steps)
        self.net = DiffusionNet(
            self.obs_dim,
            self.act_dim,
            self.steps,
            list(hidden),
            int(time_dim),
            eps_head=self.uses_eps,
            population=self.population,
        )
        self.mc_samples, self.beta_temperature = int(mc_samples), float(beta_temperature)
        self.c_energy, self.c_score = float(c_energy), float(c_score)
        checks.enforce(
            schema.DIFFUSION,
            "actor",
            mc_samples=mc_samples,
            beta_temperature=beta_temperature,
            score_space=score_space,
            score_grad_into_chain=score_grad_into_chain,
            tau_index=tau_index,
        )
        self.score_space, self.tau_index = score_space, tau_index
        self.score_grad_into_chain = bool(score_grad_into_chain)
        self.register_buffer("t_index", torch.arange(self.steps), persistent=False)

    def step(
        self, x: torch.Tensor, t: int, eps: torch.Tensor | None, phi: torch.Tensor, noise: bool, stats: dict | None
    ) -> torch.Tensor:
        """One reverse step from the latent evaluated at index t to the next one (``stats``: see :meth:`chain`)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------------ sampling
    def chain(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        tau: torch.Tensor | None = None,
        features: tuple[torch.Tensor, torch.Tensor] | None = None,
        stats: dict | None = None,
    ):
        """Run the K-step chain; returns (a⁰, x_τ or None).

        Stochastic: input ~ N(0, init_std²) and injected noise; deterministic: input 0 and no noise at any step.
        With ``tau`` (one index per row) the latent at which the network is evaluated at index τ is recorded
        (``tau_index=output``: the one the step at τ produces), detached unless ``score_grad_into_chain``. a⁰ keeps
        its graph (reparameterised) when grad mode is on. ``features``: the net's ``state_features(obs)`` if the
        caller already has them. ``stats`` (a metrics dict) receives diagnostics: with the graph, on the backward
        pass, ``train/chain_grad_norm/step<t>`` (mean per-sample ‖∂loss/∂x‖ at the latent step t produces, a⁰ at 0) and
        ``train/chain_grad_growth`` (the first step's over a⁰'s: > 1, gradients grow back through the chain, as an
        RNN's can explode); with an x̂0 clip, ``train/x0_clipped`` (fraction of x̂0 components at the clip, all steps).
        """
        features = self.net.state_features(obs) if features is None else features
        shape = (*obs.shape[:-1], self.act_dim)
        if deterministic:
            x = obs.new_zeros(shape)
        else:
            x = self.init_std * torch.randn(shape, dtype=obs.dtype, device=obs.device)
        x_tau = None if tau is None else obs.new_zeros(shape)
        after = self.tau_index == "output"
        for t in reversed(range(self.steps)):
            if tau is not None and not after:
                x_tau = self._record(x_tau, x, tau == t)
            base = self.net.base(features, self.t_index[t])
            eps, phi = self.net.from_base(base, torch.tanh(x))
            if self.eps_input == "latent":  # the reference's ε̂(s, x_t, t): a second trunk pass, at the latent
                eps, _ = self.net.from_base(base, x)
            x = self.step(x, t, eps, phi, noise=not deterministic, stats=stats)
            if stats is not None and x.requires_grad:
                x.register_hook(self._grad_norm_hook(stats, t))
            if tau is not None and after:
                x_tau = self._record(x_tau, x, tau == t)
        return x, x_tau

    def _grad_norm_hook(self, stats: dict, t: int):
        def hook(grad: torch.Tensor) -> None:  # (backward reaches step 0's output first, step K−1's last)
            # per sample: the batch-mean loss's gradient times B, i.e. ‖∂(c_energy·E + c_score·score loss)_b/∂x_b‖
            norm = grad.detach().float().norm(dim=-1, keepdim=True) * grad.shape[-2]
            stats[f"train/chain_grad_norm/step{t}"] = batch_mean(norm)
            if t == self.steps - 1 and self.steps > 1:
                stats["train/chain_grad_growth"] = stats[f"train/chain_grad_norm/step{t}"] / stats[
                    "train/chain_grad_norm/step0"
                ].clamp(min=1e-12)

        return hook

    def _record(self, x_tau: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return torch.where(rows.unsqueeze(-1), x if self.score_grad_into_chain else x.detach(), x_tau)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        with torch.no_grad():
            return self.scaler(torch.tanh(self.chain(obs, deterministic)[0]))

    def target_action(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One stochastic chain sample; no entropy bonus (zeros [B, 1])."""
        action = self.act(obs, deterministic=False)
        return action, action.new_zeros(*action.shape[:-1], 1)

    # ---------------------------------------------------------------------------------------------------- loss
    def score_target(
        self, obs: torch.Tensor, x_tau: torch.Tensor, tau: torch.Tensor, energy_fn: EnergyFn
    ) -> torch.Tensor:
        """φ*(s, x_τ, τ) of spec §4 with σ_τ of this sampler: all N perturbations in one energy call (actions
        [N, B, act] at the B states); gradients w.r.t. the perturbed points only (critics are frozen by the caller).
        ``score_space=latent`` perturbs the latent x_τ and differentiates through tanh and the action scaling;
        ``action`` (the reference's) perturbs the action a_τ = scale(tanh(x_τ)) and differentiates there (the
        perturbed actions are not clipped to the bounds)."""
        in_actions = self.score_space == "action"

        def energy_and_grad(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.enable_grad():
                points = points.detach().requires_grad_(True)
                actions = points if in_actions else self.scaler(torch.tanh(points))
                energy = energy_fn(obs, actions.view(self.mc_samples, *x_tau.shape))
                (grad,) = torch.autograd.grad(energy.sum(), points, create_graph=False)
            return energy.detach(), grad

        at = self.scaler(torch.tanh(x_tau.detach())) if in_actions else x_tau
        sigma = self.mc_sigma[tau].unsqueeze(-1)
        return mc_score(at, sigma, energy_and_grad, self.mc_samples, self.beta_temperature)

    def loss(self, obs: torch.Tensor, energy_fn: EnergyFn):
        """c_energy·mean E(s, a⁰) + c_score·MSE(φθ(s, tanh(x_τ), τ), φ*).

        One stochastic chain per call yields both a⁰ (with its graph, through all K steps) and the latent x_τ,
        τ ~ U{0 … K−1} per sample. φθ for the score loss is re-evaluated at (x_τ, τ); with x_τ detached (the
        default) the score loss trains the network at that point only and does not back-propagate into earlier
        chain steps (``score_grad_into_chain`` lets it). With c_energy = 0 (and x_τ detached) the chain runs without
        a graph (pure score matching).
        """
        tau = torch.randint(self.steps, obs.shape[:-1], device=obs.device)
        features = self.net.state_features(obs)  # shared by the chain and the score loss's φθ
        chain_graph = self.c_energy != 0.0 or self.score_grad_into_chain
        metrics: dict[str, torch.Tensor] = {}  # (the chain's diagnostics come first; its gradient norms on backward)
        with torch.set_grad_enabled(torch.is_grad_enabled() and chain_graph):
            a0, x_tau = self.chain(obs, deterministic=False, tau=tau, features=features, stats=metrics)
            squashed = torch.tanh(a0)
            energy = energy_fn(obs, self.scaler(squashed))
        energy_term = batch_mean(energy)  # (per learner: 0-dim, or [S] for a population)
        with record_function("score_target"):
            target = self.score_target(obs, x_tau, tau, energy_fn)
        _, phi = self.net.from_base(self.net.base(features, tau), torch.tanh(x_tau))
        score_loss = batch_mean((phi - target).square())
        loss = self.c_energy * energy_term + self.c_score * score_loss  # per learner
        metrics |= {
            "loss/policy": (self.c_energy * energy_term).detach(),
            "loss/score": score_loss.detach(),
            "train/energy": energy_term.detach(),
            "train/phi_norm": batch_mean(phi.detach().norm(dim=-1, keepdim=True)),
            "train/saturation": batch_mean((squashed.detach().abs() > 0.99).float()),
            "train/score_target_norm": batch_mean(target.norm(dim=-1, keepdim=True)),
        }
        return loss, metrics


# ------------------------------------------------------------------------------------------------------ samplers
class DiffusionActor(_DiffusionBase):
    """DDPM-style chain (spec §3, the default sampler). At loop index t = K−1 … 0, with (ε̂, φ) = net(s, tanh(x_t), t):

        x̂0 = (x_t − sqrt(1 − ᾱ_t)·ε̂)/sqrt(ᾱ_t),  clipped to ±x0_clip (None: no clipping)
        μ   = c1·x̂0 + c2·x_t + w·φ/(‖φ‖ + guidance_eps)   (norm per sample over the action dims; eps 1e-6)
        x_{t−1} = μ + sqrt(β̃_t)·z                     (no noise at t = 0, none in deterministic mode)

    Chain input ~ N(0, I) (0 when deterministic). Score-target noise level σ_t = sqrt(1 − ᾱ_t).
    """

    init_std = 1.0

    def __init__(
        self,
        beta_min: float = 1e-4,
        beta_max: float = 0.02,
        guidance_weight: float = 0.05,
        x0_clip: float | None = None,
        schedule: str = "exact",
        guidance_eps: float = 1e-6,
        eps_input: str = "action",
        **kwargs,
    ):
        super().__init__(**kwargs)  # the Actor contract, steps and the settings every chain shares
        checks.enforce(schema.DIFFUSION_DDPM, "actor", eps_input=eps_input, schedule=schedule)
        self.eps_input = eps_input
        for key, value in ddpm_schedule(self.steps, beta_min, beta_max, schedule).items():
            self.register_buffer(key, value, persistent=False)
        self.guidance_weight, self.guidance_eps = float(guidance_weight), float(guidance_eps)
        self.x0_clip = None if x0_clip is None else float(x0_clip)

    def step(self, x, t, eps, phi, noise, stats=None):
        x0_hat = (x - self.sigma[t] * eps) / self.sqrt_alpha_bar[t]
        if self.x0_clip is not None:
            if stats is not None:  # the mean over the K steps, accumulated step by step
                clipped = batch_mean((x0_hat.detach().abs() >= self.x0_clip).float()) / self.steps
                stats["train/x0_clipped"] = stats.get("train/x0_clipped", 0.0) + clipped
            x0_hat = x0_hat.clamp(-self.x0_clip, self.x0_clip)
        mean = self.c1[t] * x0_hat + self.c2[t] * x
        if self.guidance_weight:
            mean = mean + self.guidance_weight * phi / (phi.norm(dim=-1, keepdim=True) + self.guidance_eps)
        if noise and t > 0:
            mean = mean + self.posterior_std[t] * torch.randn_like(mean)
        return mean


class DiffusionVEActor(_DiffusionBase):
    """VE-SDE chain (spec §3, ``diffusion_ve``). At loop index t = K−1 … 0, with φ = φθ(s, tanh(x_t), t):

        x_{t−1} = x_t + Δσ²_t·φ + sqrt(Δσ²_t)·z,   Δσ²_t = σ_t² − σ_{t−1}²,  σ_{−1} = 0
        σ_t = σ_min·(σ_max/σ_min)^(t/(K−1))

    No noise at t = 0 or in deterministic mode; φ is not normalised; no ε-head. Chain input ~ N(0, σ_max²) (0 when
    deterministic). Score-target noise level σ_t.
    """

    uses_eps = False

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 1.0, **kwargs):
        super().__init__(**kwargs)  # the Actor contract, steps and the settings every chain shares
        sigma = ve_sigmas(self.steps, sigma_min, sigma_max)
        self.register_buffer("sigma", sigma, persistent=False)
        self.register_buffer("mc_sigma", sigma, persistent=False)
        self.register_buffer(
            "dsigma2", sigma.square() - torch.cat([sigma.new_zeros(1), sigma[:-1].square()]), persistent=False
        )
        self.init_std = float(sigma_max)

    def step(self, x, t, eps, phi, noise, stats=None):
        x = x + self.dsigma2[t] * phi
        if noise and t > 0:
            x = x + self.dsigma2[t].sqrt() * torch.randn_like(x)
        return x
