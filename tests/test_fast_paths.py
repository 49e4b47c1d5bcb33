"""Every fast path of the learner against a plain reference written here (per-member loops, concatenated inputs, one
energy call per action set, the score target over repeated states): same losses and same parameter gradients on a
fixed seeded batch, to 1e-5 relative."""

from functools import partial

import pytest
import torch
import torch.nn.functional as F

from algd.actors.diffusion import DiffusionActor, DiffusionVEActor
from algd.actors.gaussian import GaussianActor
from algd.bench.learner import random_batch
from algd.learner import perf
from algd.learner.energy import AugmentedLagrangianEnergy
from algd.learner.module import SafeActorCritic
from algd.learner.multipliers import LogAdamMultiplier
from algd.learner.nets import EnsembleLinear, QEnsemble

OBS, ACT, B = 5, 2, 16
RTOL, ATOL = 1e-5, 1e-6


# ------------------------------------------------------------------------------------------------ plain references
def plain_q(ens: QEnsemble, obs, action):
    """Member by member, on the concatenated input: [E, B, 1]."""
    act = {"relu": F.relu, "silu": F.silu}[ens.act]
    layers = [m for m in ens.net if isinstance(m, EnsembleLinear)]
    outs = []
    for e in range(ens.members):
        h = torch.cat([obs, action], -1)
        for i, layer in enumerate(layers):
            h = h @ layer.weight[e] + layer.bias[e]
            if i < len(layers) - 1:
                h = act(h)
        outs.append(h)
    return torch.stack(outs)


def plain_energy(model, obs, action):
    """L_A = −min(Q1, Q2) + ([λ + ρ(Q̂c − h)]_+² − λ²)/(2ρ), Q̂c = mean + k·std (unbiased) over members."""
    q = plain_q(model.q, obs, action).min(0).values
    qc = plain_q(model.qc, obs, action)
    qc_hat = qc.mean(0) + model.k * qc.std(0)
    lam, rho = model.multiplier.log_lambda.exp().detach(), model.energy.rho
    return -q + ((lam + rho * (qc_hat - model.h)).clamp(min=0).square() - lam.square()) / (2 * rho)


def plain_net(net, obs, squashed, t):
    emb = net.embed.weight[t].expand(obs.shape[0], -1)
    h = torch.cat([obs, squashed, emb], -1)
    for layer in net.trunk:
        if isinstance(layer, torch.nn.Linear):
            h = F.relu(h @ layer.weight.T + layer.bias)
    eps = None if net.eps_head is None else h @ net.eps_head.weight.T + net.eps_head.bias
    return eps, h @ net.phi_head.weight.T + net.phi_head.bias


def plain_chain(actor, obs, tau=None):
    """Same random draws in the same order as the actor: input, then one noise draw per step with t > 0."""
    x = actor.init_std * torch.randn(obs.shape[0], actor.act_dim)
    x_tau = torch.zeros_like(x)
    for t in reversed(range(actor.steps)):
        if tau is not None:
            x_tau = torch.where((tau == t).unsqueeze(-1), x.detach(), x_tau)
        eps, phi = plain_net(actor.net, obs, torch.tanh(x), torch.tensor(t))
        x = actor.step(x, t, eps, phi, noise=True)
    return x, x_tau


def plain_diffusion_loss(model, obs):
    actor = model.actor
    tau = torch.randint(actor.steps, (obs.shape[0],))
    a0, x_tau = plain_chain(actor, obs, tau)
    energy_term = plain_energy(model, obs, actor.scaler(torch.tanh(a0))).mean()
    n = actor.mc_samples
    noise = torch.randn(n, *x_tau.shape)
    pert = (x_tau.unsqueeze(0) + actor.sigma[tau].unsqueeze(-1) * noise).reshape(n * obs.shape[0], -1)
    pert.requires_grad_(True)
    energy = plain_energy(model, obs.repeat(n, 1), actor.scaler(torch.tanh(pert)))
    (grad,) = torch.autograd.grad(energy.sum(), pert)
    w = torch.softmax(-energy.detach().reshape(n, -1, 1) / actor.beta_temperature, 0)
    target = -(w * grad.reshape(n, -1, ACT)).sum(0) / actor.beta_temperature
    _, phi = plain_net(actor.net, obs, torch.tanh(x_tau), tau)
    return actor.c_energy * energy_term + actor.c_score * (phi - target).square().mean()


def plain_gaussian_loss(model, obs):
    actor = model.actor
    action, log_prob = actor.sample(obs)
    policy = (actor.alpha * log_prob + plain_energy(model, obs, action)).mean()
    return policy - (actor.log_alpha * (log_prob.detach() + actor.target_entropy)).mean()


def plain_grads(model, batch, actor_loss):
    """The update's losses and gradients, computed plainly on unchanged parameters (the test uses lr = 0)."""
    obs, action, nxt = batch["observation"], batch["action"], batch["next"]
    with torch.no_grad():
        next_action, bonus = model.actor.target_action(nxt["observation"])
        y = nxt["reward"] + model.gamma * (
            plain_q(model.q_target, nxt["observation"], next_action).min(0).values + bonus
        )
        yc = nxt["cost"].reshape(-1, 1) + model.cost_gamma * plain_q(model.qc_target, nxt["observation"], next_action)
    qc = plain_q(model.qc, obs, action)
    losses = {
        "loss/critic": (plain_q(model.q, obs, action) - y).square().mean((1, 2)).sum(),
        "loss/cost_critic": (qc - yc).square().mean((1, 2)).sum(),
    }
    lam_loss = (model.multiplier.lam * -(qc.detach().mean(0) + model.k * qc.detach().std(0) - model.h)).mean()
    losses["loss/actor"] = actor_loss(model, obs)
    grads = {}
    for loss, module in [
        (losses["loss/critic"], model.q),
        (losses["loss/cost_critic"], model.qc),
        (losses["loss/actor"], model.actor),
        (lam_loss, model.multiplier),
    ]:
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        for (n, _), g in zip(named, torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)):
            grads[f"{id(module)}.{n}"] = g
    return losses, grads


# ----------------------------------------------------------------------------------------------------------- tests
def _model(actor, ensemble=4):
    return SafeActorCritic(
        OBS,
        ACT,
        h=0.5,
        cost_done_mask=False,
        actor=actor(
            obs_dim=OBS, act_dim=ACT, action_low=torch.tensor([-1.0, -2.0]), action_high=torch.tensor([1.0, 0.5])
        ),
        energy=AugmentedLagrangianEnergy(rho=1.5),
        multiplier=LogAdamMultiplier(),
        optim=partial(torch.optim.SGD, lr=0.0),
        critic_hidden=[32, 32],
        cost_hidden=[32, 32],
        ensemble=ensemble,
    )


def _batch(seed=0):
    return random_batch(B, obs=OBS, act=ACT, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("act", ["relu", "silu"])
@pytest.mark.parametrize("lead", [(), (3,)])
def test_state_features_path_equals_plain_forward(act, lead):
    """Q from the reused state part equals the concatenated-input forward, in value and in action-gradient."""
    torch.manual_seed(0)
    ens = QEnsemble(OBS + ACT, 1, [32, 32], members=3, act=act)
    obs = torch.randn(B, OBS)
    action = torch.randn(*lead, B, ACT, requires_grad=True)
    fast = ens.from_features(ens.state_features(obs), action)
    (g_fast,) = torch.autograd.grad(fast.sum(), action)
    plain = torch.stack([plain_q(ens, obs, a) for a in action.reshape(-1, B, ACT)], 1).reshape(fast.shape)
    (g_plain,) = torch.autograd.grad(plain.sum(), action)
    assert fast.shape == (3, *lead, B, 1)
    torch.testing.assert_close(fast, plain, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(g_fast, g_plain, rtol=RTOL, atol=ATOL)


def test_energy_for_matches_plain_energy_and_refuses_other_states():
    torch.manual_seed(0)
    model = _model(partial(GaussianActor, hidden=[16]))
    obs, action = torch.randn(B, OBS), torch.rand(4, B, ACT) * 2 - 1
    energy_fn = model.energy_for(obs)
    fast = energy_fn(obs, action)
    plain = torch.stack([plain_energy(model, obs, a) for a in action])
    torch.testing.assert_close(fast, plain, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(model.energy_fn(obs, action[0]), plain[0], rtol=RTOL, atol=ATOL)
    with pytest.raises(ValueError, match="states"):
        energy_fn(obs.clone(), action[0])


ACTORS = {
    "diffusion": (partial(DiffusionActor, hidden=[16, 16], time_dim=4, steps=3), plain_diffusion_loss),
    "diffusion_ve": (partial(DiffusionVEActor, hidden=[16, 16], time_dim=4, steps=3), plain_diffusion_loss),
    "diffusion_c_energy_0": (
        partial(DiffusionActor, hidden=[16, 16], time_dim=4, steps=3, c_energy=0.0),
        plain_diffusion_loss,
    ),
    "gaussian": (partial(GaussianActor, hidden=[16]), plain_gaussian_loss),
}


@pytest.mark.parametrize("name", list(ACTORS))
def test_update_matches_plain_reference(name):
    """One full ``update`` (critics, cost ensemble, actor with its score target, λ): every loss and every parameter
    gradient equals the plain computation on the same batch and the same random draws."""
    actor, actor_loss = ACTORS[name]
    torch.manual_seed(0)
    model = _model(actor).standalone()
    batch = _batch()
    torch.manual_seed(1)
    metrics = model.update(batch)
    fast_grads = {
        f"{id(m)}.{n}": p.grad
        for m in (model.q, model.qc, model.actor, model.multiplier)
        for n, p in m.named_parameters()
        if p.requires_grad
    }
    torch.manual_seed(1)
    losses, grads = plain_grads(model, batch, actor_loss)
    for key, value in losses.items():
        torch.testing.assert_close(metrics[key], value.detach(), rtol=RTOL, atol=ATOL, msg=key)
    assert fast_grads.keys() == grads.keys()
    for key, g in grads.items():  # no gradient (None) and an all-zero one are the same update
        fast = fast_grads[key]
        if g is None or fast is None:
            assert not any(t is not None and t.any() for t in (g, fast)), key
        else:
            torch.testing.assert_close(fast, g, rtol=RTOL, atol=ATOL, msg=key)


@pytest.mark.parametrize("name", list(ACTORS))
def test_fused_adam_updates_like_plain_adam(name):
    """The CPU default (``optim.fused=null`` → fused Adam) trains the same parameters as the for-loop Adam: 5 full
    updates from the same init, batch and random draws."""

    def flat(model):
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    params = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = _model(ACTORS[name][0])
        init = flat(model)
        model.optim = partial(torch.optim.Adam, lr=1e-3, fused=fused)
        model.standalone()
        torch.manual_seed(1)
        for seed in range(5):
            model.update(_batch(seed))
        params.append(flat(model))
        assert not torch.equal(params[-1], init), "no update"
    torch.testing.assert_close(params[1], params[0], rtol=1e-5, atol=1e-6)


def test_keep_heap_is_idempotent():
    first = perf.keep_heap()
    assert perf.keep_heap() == first


# ----------------------------------------------------------------------------------- lean Safety-Gymnasium env
@pytest.mark.safety_gym
@pytest.mark.parametrize("task", ["safety_gym", "velocity"])
def test_lean_env_equals_torchrl_wrapper(task):
    """SafetyGymEnv gives the rollout TorchRL's SafetyGymnasiumWrapper + DoubleToFloat gives (same seed, same
    actions, across an auto-reset): every key, dtype, shape and value, and the same specs (plus ``goal_met``)."""
    from torchrl.envs import DoubleToFloat, TransformedEnv
    from torchrl.envs.libs.safety_gymnasium import SafetyGymnasiumWrapper

    from algd.envs.safety_gym import SafetyGymEnv, SafetyGymFactory
    from algd.envs.velocity import VelocityFactory

    if task == "safety_gym":
        factory, steps = (
            SafetyGymFactory(
                "PointGoal", "SafetyPointGoal1-v0", max_episode_steps=30, cost_limit=10.0, fixed_layout=False
            ),
            70,
        )
    else:
        factory, steps = (
            VelocityFactory(
                "Hopper", "paper", "Hopper-v4", cost_limit=82.75, max_episode_steps=40, cost_gamma=0.99, obs_dims=None
            ),
            90,
        )
    lean = factory(3)
    assert isinstance(lean, SafetyGymEnv)
    reference = TransformedEnv(SafetyGymnasiumWrapper(factory(3).gym_env), DoubleToFloat())
    lean_obs = lean.full_observation_spec.clone()
    assert lean_obs.pop("goal_met").dtype == torch.bool  # our one extra key (info["goal_met"])
    assert lean_obs == reference.full_observation_spec
    for key in ("full_reward_spec", "full_done_spec", "full_action_spec"):
        assert getattr(lean, key) == getattr(reference, key), key
    actions = torch.rand(steps, *lean.action_spec.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1

    def rollout(env):
        env.set_seed(11)
        it = iter(actions)
        return env.rollout(steps, lambda td: td.set("action", next(it)), break_when_any_done=False)

    a, b = rollout(lean), rollout(reference)
    a = a.exclude("goal_met", ("next", "goal_met"))
    assert set(a.keys(True, True)) == set(b.keys(True, True))
    assert a["next", "done"].any(), "the rollout should cross an episode boundary"
    for key in a.keys(True, True):
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key
    lean.close(), reference.close()


def test_goal_met_comes_from_the_task_info():
    """``("next", "goal_met")`` is the step's ``info["goal_met"]`` (Safety-Gymnasium sets it when the goal is reached;
    absent means False), the key ``model.reward_done_on_goal`` reads."""
    import numpy as np

    from algd.envs.base import import_gymnasium
    from algd.envs.safety_gym import SafetyGymEnv

    box = import_gymnasium().spaces.Box

    class Task:  # the 6-tuple interface of a Safety-Gymnasium env
        observation_space, action_space = box(-1, 1, (3,), np.float64), box(-1, 1, (2,), np.float32)
        infos = iter([{}, {"goal_met": True}, {"cost": 0.0}])

        def reset(self, **kwargs):
            return np.zeros(3), {}

        def step(self, action):
            return np.ones(3), 1.0, 0.0, False, False, next(self.infos)

        def close(self):
            pass

    env = SafetyGymEnv(Task())
    it = iter(torch.zeros(3, 2))
    td = env.rollout(3, lambda td: td.set("action", next(it)), break_when_any_done=False)
    assert td["next", "goal_met"].reshape(-1).tolist() == [False, True, False]


def test_bench_breakdown_covers_the_update_and_the_yardstick():
    """``make bench``'s profiled breakdown: every phase of the update, the matmul-kernel time, and the yardstick."""
    from algd.bench.learner import PHASES, update_breakdown

    ours, sac = update_breakdown("gaussian", 2), update_breakdown("minimal_sac", 2)
    assert set(ours) == {*PHASES, "matmul", "total_profiled"} and set(sac) == {"matmul", "total_profiled"}
    for ms in (ours, sac):
        assert 0 < ms["matmul"] < ms["total_profiled"]
    assert ours["critic"] > 0 and ours["cost_critic"] > 0 and ours["actor"] > 0 and ours["score_target"] == 0


def test_bench_collection_runs_the_training_policy_wrapper():
    """``make bench``'s collection timing builds the training Collector around a random actor (it broke when the
    policy wrapper started reading ``actor.population``); a few frames, the rates and their ratio come out."""
    from algd.bench.loops import collect_fps

    out = collect_fps("SafetyPointGoal1-v0", frames=20, repeats=1)
    assert out["raw_fps"] > 0 and out["collector_fps"] > 0
    assert out["ratio"] == pytest.approx(out["collector_fps"] / out["raw_fps"])
