"""Diffusion actors (spec §3–§5): schedules, determinism, the Monte-Carlo score target, guidance, gradient flow."""

import math
from functools import partial

import pytest
import torch

from algd.actors.diffusion import DiffusionActor, DiffusionVEActor
from algd.actors.diffusion_parts import ddpm_schedule, mc_score, ve_sigmas
from algd.learner.energy import AugmentedLagrangianEnergy
from algd.learner.module import SafeActorCritic, frozen
from algd.learner.multipliers import LogAdamMultiplier

TINY = {"hidden": [16, 16], "time_dim": 4}


def _actor(cls=DiffusionActor, obs_dim=3, act_dim=2, **kwargs):
    return cls(
        obs_dim=obs_dim,
        act_dim=act_dim,
        action_low=-torch.ones(act_dim),
        action_high=torch.ones(act_dim),
        **{**TINY, **kwargs},
    )


def test_ddpm_schedule_hand_computed():
    k, b0, b1 = 5, 1e-4, 0.02
    betas = [b0 + (b1 - b0) * i / (k - 1) for i in range(k)]
    alpha_bar, prod = [], 1.0
    for beta in betas:
        prod *= 1.0 - beta
        alpha_bar.append(prod)
    sched = ddpm_schedule(k, b0, b1)
    assert sched["betas"].tolist() == pytest.approx(betas, rel=1e-6)
    assert sched["alpha_bar"].tolist() == pytest.approx(alpha_bar, rel=1e-6)
    assert sched["sigma"].tolist() == pytest.approx([math.sqrt(1 - a) for a in alpha_bar], rel=1e-5)
    assert alpha_bar[-1] == pytest.approx(0.95063, abs=1e-5)  # (1−1e-4)(1−0.005075)(1−0.01005)(1−0.015025)(1−0.02)
    prev = [1.0, *alpha_bar[:-1]]
    c1 = [b * math.sqrt(p) / (1 - a) for b, p, a in zip(betas, prev, alpha_bar)]
    c2 = [(1 - p) * math.sqrt(1 - b) / (1 - a) for b, p, a in zip(betas, prev, alpha_bar)]
    assert sched["c1"].tolist() == pytest.approx(c1, rel=1e-5) and sched["c2"].tolist() == pytest.approx(c2, abs=1e-6)
    assert sched["c1"][0].item() == pytest.approx(1.0) and sched["c2"][0].item() == 0.0  # last step returns x̂0


def test_ve_sigmas_geometric():
    assert ve_sigmas(5, 0.01, 1.0).tolist() == pytest.approx([0.01 * 100 ** (t / 4) for t in range(5)], rel=1e-6)
    with pytest.raises(ValueError, match="steps"):
        ve_sigmas(1)


@pytest.mark.parametrize("cls", [DiffusionActor, DiffusionVEActor])
def test_deterministic_act_repeats_and_stochastic_act_varies(cls):
    torch.manual_seed(0)
    actor = _actor(cls)
    obs = torch.randn(4, 3)
    det = actor.act(obs, deterministic=True)
    assert torch.equal(det, actor.act(obs, deterministic=True))
    assert not torch.allclose(actor.act(obs), actor.act(obs))
    assert det.shape == (4, 2) and det.abs().max() <= 1.0
    action, bonus = actor.target_action(obs)
    assert action.shape == (4, 2) and torch.equal(bonus, torch.zeros(4, 1))


@pytest.mark.parametrize("beta", [1.0, 0.5])
def test_mc_score_matches_analytic_noised_score(beta):
    """E(a) = ½‖a − m‖²/s², so exp(−E/β) ∝ N(m, β s²) and exp(−E/β) ⊛ N(0, σ²) = N(m, β s² + σ²), whose score at x
    is −(x − m)/(β s² + σ²). The estimator is that score: ∇ₓ log(p ⊛ N_σ)(x) = E_post[−∇E(a)/β] with
    post(a|x) ∝ p(a)·N(x; a, σ²) (move ∇ₓ onto the kernel, integrate by parts), and since N(x; a, σ²) = N(a; x, σ²)
    self-normalised importance sampling with proposals a_i = x + σ ε_i and weights ∝ p(a_i) = exp(−E(a_i)/β), i.e.
    softmax(−E_i/β), estimates it. With N = 50000 the estimate is within 5 % (of ‖score‖) of the analytic value."""
    torch.manual_seed(0)
    m, s = torch.tensor([0.5, -1.0]), 0.7
    x = torch.tensor([[2.0, 0.0], [-1.0, -2.5], [0.5, 1.0]])
    sigma = torch.tensor([[0.3], [0.8], [0.5]])

    def energy_and_grad(a):
        return 0.5 * ((a - m) ** 2).sum(-1) / s**2, (a - m) / s**2

    est = mc_score(x, sigma, energy_and_grad, n=50000, beta=beta)
    exact = -(x - m) / (beta * s**2 + sigma**2)
    assert torch.all((est - exact).norm(dim=-1) < 0.05 * exact.norm(dim=-1))


@pytest.mark.parametrize("cls", [DiffusionActor, DiffusionVEActor])
def test_actor_score_target_uses_its_sigma_and_state_order(cls):
    """Through the actor: env-scale energy of tanh(latent) whose minimum m(s) depends on the state, so a wrong
    repeat order of states vs perturbations or a wrong σ_τ breaks the match with −(x − m)/(β s² + σ_τ²)."""
    torch.manual_seed(1)
    actor = _actor(cls, mc_samples=50000)
    obs = torch.tensor([[1.0, -0.5, 0.0], [-1.0, 0.5, 0.0], [0.0, 1.0, 0.0]])
    s = 0.7

    def energy_fn(o, a):  # quadratic in the latent atanh(a); bounds are ±1 so the scaler is the identity
        return 0.5 * ((torch.atanh(a) - o[:, :2]) ** 2).sum(-1, keepdim=True) / s**2

    x_tau = torch.tensor([[0.2, 0.3], [0.5, -0.4], [-0.3, 0.1]])
    tau = torch.tensor([0, 2, 4])
    est = actor.score_target(obs, x_tau, tau, energy_fn)
    sigma = actor.sigma[tau].unsqueeze(-1)
    exact = -(x_tau - obs[:, :2]) / (s**2 + sigma**2)
    assert torch.all((est - exact).norm(dim=-1) < 0.05 * exact.norm(dim=-1))


def test_chain_records_the_latent_evaluated_at_tau():
    torch.manual_seed(0)
    actor = _actor(steps=4)
    seen = {}
    forward, calls = actor.net.from_base, []

    def spy(base, squashed):  # the chain evaluates the net at indices K−1 … 0, in that order
        seen[actor.steps - 1 - len(calls)] = squashed.detach().clone()
        calls.append(1)
        return forward(base, squashed)

    actor.net.from_base = spy
    tau = torch.tensor([0, 1, 2, 3, 3, 0])
    _, x_tau = actor.chain(torch.randn(6, 3), tau=tau)
    for i, t in enumerate(tau.tolist()):
        assert torch.allclose(torch.tanh(x_tau[i]), seen[t][i])


@pytest.mark.parametrize("t", [4, 0])
def test_guidance_lowers_a_toy_energy(t):
    """One DDPM step from the same x_t and ε̂: adding w·φ/‖φ‖ with φ = −∇E, E(x) = ½‖x − m‖², lowers E(μ)
    and moves μ by exactly w."""
    torch.manual_seed(0)
    actor = _actor(steps=5, guidance_weight=0.05)
    x, eps, m = torch.randn(8, 2), torch.randn(8, 2), torch.tensor([4.0, -3.0])
    phi = m - x

    def energy(z):
        return 0.5 * ((z - m) ** 2).sum(-1)

    guided = actor.step(x, t, eps, phi, noise=False)
    actor.guidance_weight = 0.0
    plain = actor.step(x, t, eps, phi, noise=False)
    assert torch.all(energy(guided) < energy(plain))
    assert torch.allclose((guided - plain).norm(dim=-1), torch.full((8,), 0.05), atol=1e-5)


def test_step_rules_and_no_noise_on_the_last_step():
    torch.manual_seed(0)
    x, eps, phi = torch.randn(4, 2), torch.randn(4, 2), torch.randn(4, 2)
    ve = _actor(DiffusionVEActor, steps=5)
    sig = [0.01 * 100 ** (t / 4) for t in range(5)]
    assert torch.allclose(ve.step(x, 3, None, phi, noise=False), x + (sig[3] ** 2 - sig[2] ** 2) * phi)
    assert torch.allclose(ve.step(x, 0, None, phi, noise=True), x + sig[0] ** 2 * phi)
    assert not torch.allclose(ve.step(x, 1, None, phi, noise=True), ve.step(x, 1, None, phi, noise=False))
    ddpm = _actor(steps=5)
    assert torch.equal(ddpm.step(x, 0, eps, phi, noise=True), ddpm.step(x, 0, eps, phi, noise=False))
    assert not torch.allclose(ddpm.step(x, 1, eps, phi, noise=True), ddpm.step(x, 1, eps, phi, noise=False))


@pytest.mark.parametrize("c_score", [0.1, 0.0])
@pytest.mark.parametrize("cls", [DiffusionActor, DiffusionVEActor])
def test_actor_loss_reaches_heads_and_trunk_but_not_critics(cls, c_score):
    """With c_score = 0 only the energy term back-propagated through the chain can produce these gradients."""
    torch.manual_seed(0)
    model = SafeActorCritic(
        3,
        2,
        h=1.0,
        cost_done_mask=False,
        actor=_actor(cls, steps=3, c_score=c_score),
        energy=AugmentedLagrangianEnergy(),
        multiplier=LogAdamMultiplier(),
        optim=partial(torch.optim.SGD, lr=0.0),
        critic_hidden=[16],
        cost_hidden=[16],
        ensemble=2,
    )
    with frozen(model.q, model.qc):
        loss, metrics = model.actor.loss(torch.randn(5, 3), model.energy_fn)
        loss.backward()
    assert torch.isfinite(loss)
    assert set(metrics) == {
        "loss/policy",
        "loss/score",
        "train/energy",
        "train/phi_norm",
        "train/saturation",
        "train/score_target_norm",
        *(f"train/chain_grad_norm/step{t}" for t in range(3)),  # (filled in on the backward pass)
        "train/chain_grad_growth",
    }
    assert all(not v.requires_grad and v.dim() == 0 for v in metrics.values())
    assert all(p.grad is None for p in [*model.q.parameters(), *model.qc.parameters()])
    net = model.actor.net
    parts = [net.trunk, net.phi_head, net.embed] + ([net.eps_head] if cls is DiffusionActor else [])
    for part in parts:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part


# ------------------------------------------------------------------- switches for the reference code's behaviour
def test_reference_schedule_is_float32_with_its_regularisers():
    exact, ref = ddpm_schedule(5), ddpm_schedule(5, numerics="reference")
    assert torch.equal(exact["mc_sigma"], exact["sigma"])
    b0 = 1e-4  # 1 − ᾱ_0 = β_0: the last step's c1 = β_0/(β_0 + 1e-8) ≈ 0.9999, up to float32 cancellation
    assert exact["c1"][0].item() == pytest.approx(1.0, rel=1e-7)
    assert ref["c1"][0].item() == pytest.approx(b0 / (b0 + 1e-8), rel=1e-3)
    assert ref["mc_sigma"][0].item() == pytest.approx(math.sqrt(b0 + 1e-8), rel=1e-3)
    betas = torch.linspace(1e-4, 0.02, 5)  # the reference's float32 arithmetic, formula by formula
    ab = torch.cumprod(1.0 - betas, 0)
    abp = torch.cat([torch.ones(1), ab[:-1]])
    assert torch.equal(ref["c1"], abp.sqrt() * betas / (1.0 - ab + 1e-8))
    assert torch.equal(ref["posterior_std"], (betas * (1.0 - abp) / (1.0 - ab + 1e-8) + 1e-8).sqrt())


def test_score_space_action_perturbs_and_differentiates_the_action():
    """``score_space=action`` (the reference's): with the same noise, φ* = −(1/β)·Σ softmax(−E/β)·∇_a E at
    a_τ + σ_τ·ε, a_τ = tanh(x_τ), for an energy quadratic in the action; ``latent`` differs (it differentiates
    through tanh)."""
    x_tau, tau = torch.tensor([[0.3, -1.2], [2.0, 0.1]]), torch.tensor([1, 3])
    obs = torch.zeros(2, 3)
    target = torch.tensor([0.5, -0.5])

    def energy_fn(o, a):
        return 0.5 * ((a - target) ** 2).sum(-1, keepdim=True)

    actor, latent = _actor(score_space="action", mc_samples=3), _actor(mc_samples=3)
    torch.manual_seed(4)
    est = actor.score_target(obs, x_tau, tau, energy_fn)
    torch.manual_seed(4)
    noise = torch.randn(3, 2, 2)
    a = torch.tanh(x_tau) + actor.mc_sigma[tau].unsqueeze(-1) * noise
    w = torch.softmax(-energy_fn(obs, a), dim=0)
    assert torch.allclose(est, -(w * (a - target)).sum(0), atol=1e-6)
    torch.manual_seed(4)
    assert not torch.allclose(latent.score_target(obs, x_tau, tau, energy_fn), est, atol=1e-3)


@pytest.mark.parametrize("cls", [DiffusionActor, DiffusionVEActor])
def test_tau_index_output_records_the_latent_the_step_at_tau_produces(cls):
    torch.manual_seed(0)
    obs, tau = torch.randn(3, 3), torch.full((3,), 3)
    actor = _actor(cls, steps=4, tau_index="output")
    _, x_in = _actor(cls, steps=4).chain(obs, deterministic=True, tau=tau)
    _, x_out = actor.chain(obs, deterministic=True, tau=tau)
    assert torch.equal(x_in, torch.zeros(3, 2))  # the deterministic chain input, evaluated at index K−1
    eps, phi = actor.net(obs, torch.tanh(torch.zeros(3, 2)), torch.tensor(3))
    assert torch.allclose(x_out, actor.step(torch.zeros(3, 2), 3, eps, phi, noise=False), atol=1e-6)


@pytest.mark.parametrize("into_chain", [False, True])
def test_score_grad_into_chain_lets_the_score_loss_reach_the_chain(into_chain):
    """With c_energy = 0 the ε-head is reached only if the score loss back-propagates through x_τ into the steps
    before τ (τ = output of a step, so even τ = K−1 has one step before it)."""
    torch.manual_seed(0)
    actor = _actor(steps=3, c_energy=0.0, score_grad_into_chain=into_chain, tau_index="output")
    energy = lambda o, a: (a**2).sum(-1, keepdim=True)  # noqa: E731
    with torch.enable_grad():
        loss, _ = actor.loss(torch.randn(6, 3), energy)
    loss.backward()
    grads = [p.grad for p in actor.net.eps_head.parameters()]
    if into_chain:
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    else:
        assert all(g is None or g.abs().sum() == 0 for g in grads)


def test_bad_switch_values_are_refused():
    with pytest.raises(ValueError, match="actor.score_space must be latent .* or action"):
        _actor(score_space="pre_tanh")
    with pytest.raises(ValueError, match="actor.tau_index must be input"):
        _actor(tau_index=1)


def test_eps_input_latent_feeds_the_raw_latent_to_the_eps_head():
    """``eps_input=latent`` (the reference's): ε̂ = ε-head(trunk(s, x_t, emb(t))) while φ still sees tanh(x_t)."""
    torch.manual_seed(0)
    obs = torch.randn(3, 3)
    ours, theirs = _actor(steps=2), _actor(steps=2, eps_input="latent")
    theirs.load_state_dict(ours.state_dict())
    seen = []
    for actor in (ours, theirs):
        actor.step = lambda x, t, eps, phi, noise, stats=None: seen.append((x.clone(), eps, phi)) or x
        torch.manual_seed(1)
        actor.chain(obs)  # the chain input ~ N(0, 1): tanh(x) ≠ x
    (x, eps_ours, phi_ours), (x2, eps_theirs, phi_theirs) = seen[0], seen[2]
    assert torch.equal(x, x2) and torch.equal(phi_ours, phi_theirs)
    assert torch.equal(eps_ours, ours.net(obs, torch.tanh(x), torch.tensor(1))[0])
    assert torch.allclose(eps_theirs, ours.net(obs, x, torch.tensor(1))[0], atol=1e-6)
    assert not torch.allclose(eps_ours, eps_theirs)
