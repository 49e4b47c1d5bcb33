"""Our update is the authors' update: one ALGD update of github Wenxuan52/ALGD (commit 1f6820b), recorded by
``scripts/reference_fixture.py`` (weights, batch, random draws, losses, gradients, parameters after), replayed through
our learner built from ``experiment=algd_reference`` (DDPM) and ``algd_reference_ve`` (VE-SDE).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from conftest import patched_draws
from tensordict import TensorDict

from algd import build

DATA = Path(__file__).parent / "data"
RTOL = 1e-5


def fixture(kind: str) -> dict:
    return torch.load(DATA / f"reference_update_{kind}.pt", weights_only=True)


def our_learner(kind: str, settings: dict, preset: str | None = None):
    s = settings
    width = s["hidden"]
    preset = preset or ("algd_reference" if kind == "ddpm" else "algd_reference_ve")
    cfg = build.compose(
        [
            f"experiment={preset}",
            "env=toy",
            f"env.max_episode_steps={s['episode_length']}",
            f"env.cost_limit={s['cost_limit']}",
            f"critic.hidden=[{width},{width}]",
            f"critic.cost_hidden=[{width},{width}]",
            f"actor.hidden=[{width},{width},{width}]",
            f"actor.steps={s['steps']}",
            f"actor.mc_samples={s['mc_samples']}",
            f"ensemble={s['ensemble']}",
            "polyak_every=1",
            "optim.fused=false",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",  # (the cross-check is in fp32 whatever the default)
        ]
    )
    device = build.resolve_device(cfg)
    info = build.build_env(cfg).info
    specs = {
        "obs_dim": s["obs_dim"],
        "act_dim": s["act_dim"],
        "action_low": -torch.ones(s["act_dim"]),
        "action_high": torch.ones(s["act_dim"]),
    }
    return build.build_learner(cfg, specs, info, device).standalone()


def views(model) -> dict:
    """Their parameter name → a function giving our tensor in their layout, from ``get(our parameter)`` (the
    parameter itself or its gradient)."""
    out = {}
    for prefix, net in (("critic", model.q), ("critic_target", model.q_target)):
        for member, names in enumerate((("linear1", "linear2", "linear3"), ("linear4", "linear5", "linear6"))):
            for name, idx in zip(names, (0, 2, 4)):
                layer = net.net[idx]
                out[f"{prefix}.{name}.weight"] = lambda g, la=layer, m=member: g(la.weight)[m].T
                out[f"{prefix}.{name}.bias"] = lambda g, la=layer, m=member: g(la.bias)[m, 0]
    for prefix, net in (("safety_critics", model.qc), ("safety_critic_targets", model.qc_target)):
        for name, idx in (("nn1", 0), ("nn2", 2), ("nn3", 4)):
            layer = net.net[idx]
            out[f"{prefix}.{name}.weight"] = lambda g, la=layer: g(la.weight)
            out[f"{prefix}.{name}.bias"] = lambda g, la=layer: g(la.bias)[:, 0]
    policy = model.actor.net
    out["policy.time_embedding.weight"] = lambda g: g(policy.embed.weight)
    for idx in (0, 2, 4):
        out[f"policy.mlp.{idx}.weight"] = lambda g, i=idx: g(policy.trunk[i].weight)
        out[f"policy.mlp.{idx}.bias"] = lambda g, i=idx: g(policy.trunk[i].bias)
    heads = [("score_head", policy.phi_head)] + ([("eps_head", policy.eps_head)] if policy.eps_head is not None else [])
    for name, head in heads:
        out[f"policy.{name}.weight"] = lambda g, h=head: g(h.weight)
        out[f"policy.{name}.bias"] = lambda g, h=head: g(h.bias)
    out["log_lam"] = lambda g: g(model.multiplier.log_lambda)
    return out


def load_their_weights(model, weights: dict) -> None:
    with torch.no_grad():
        for name, view in views(model).items():
            view(lambda p: p).copy_(weights[name])


@contextmanager
def replayed_draws(fix: dict):
    """``torch.randn``/``randn_like``/``randint`` serve the reference's draws in order (a draw the reference made as
    [B, N, A] is served transposed when we ask for [N, B, A]); a request of another shape fails the test."""
    streams = {"normal": iter(fix["normals"]), "int": iter(fix["ints"])}

    def serve(kind, shape, draw):
        value = next(streams[kind])
        if tuple(value.shape) != tuple(shape) and value.dim() == 3 and tuple(value.transpose(0, 1).shape) == shape:
            value = value.transpose(0, 1)
        assert tuple(value.shape) == tuple(shape), f"draw of shape {tuple(shape)}, the reference drew {value.shape}"
        return value.clone()

    with patched_draws(serve):
        yield
        assert all(next(stream, None) is None for stream in streams.values()), "the reference made more random draws"


def batch_of(fix: dict) -> TensorDict:
    b = fix["batch"]
    n = b["state"].shape[0]
    return TensorDict(
        {
            "observation": b["state"],
            "action": b["action"],
            "next": {
                "observation": b["next_state"],
                "reward": b["reward"].unsqueeze(-1),
                "cost": b["cost"],
                "terminated": torch.zeros(n, 1, dtype=torch.bool),
                "done": torch.zeros(n, 1, dtype=torch.bool),
                "goal_met": (b["mask"] == 0).unsqueeze(-1),  # the reference's done: its reward mask is 1 − done
            },
        },
        [n],
    )


def close(ours: torch.Tensor, theirs: torch.Tensor, what: str, floor: float = 0.0) -> None:
    """max |ours − theirs| ≤ RTOL·max |theirs| + ``floor``, element by element."""
    err = (ours - theirs).abs().max().item()
    bound = RTOL * theirs.abs().max().item() + floor
    assert err <= bound, (
        f"{what}: max |ours − theirs| = {err:.3g} > {bound:.3g} (max |theirs| {theirs.abs().max():.3g})"
    )


@pytest.mark.parametrize("kind", ["ddpm", "ve"])
def test_one_update_equals_the_authors_update(kind):
    """From the same weights, batch and random draws: the four losses and the gradient every optimiser steps with
    equal the authors' within 1e-5 of each tensor's largest value (measured: ≤ 2.5e-7), and so does every parameter
    after the update (online networks, targets, log λ), give or take 1 % of one Adam step: Adam's first step
    lr·g/(|g| + ε) turns a gradient difference δ on an element with |g| ≈ ε = 1e-8 into a step difference of about
    lr·δ/(4ε) (measured: 3.1e-3·lr on one VE bias element whose gradient is −2.6e-8; everything else ≤ 1e-7)."""
    fix = fixture(kind)
    torch.manual_seed(0)
    model = our_learner(kind, fix["settings"])
    assert model.h == pytest.approx(fix["h"], rel=1e-12)
    load_their_weights(model, fix["before"])
    grads = {}
    for opt in model.optimizer_list():
        real_step = opt.step

        def step(*args, _real=real_step, _opt=opt, **kwargs):
            for p in (p for group in _opt.param_groups for p in group["params"]):
                grads[id(p)] = p.grad.detach().clone()
            return _real(*args, **kwargs)

        opt.step = step
    with replayed_draws(fix):
        metrics = model.update(batch_of(fix))

    critic, cost, actor, lam = fix["losses"]
    lr = fix["settings"]["lr"]
    close(metrics["loss/critic"], critic, "loss/critic")
    close(metrics["loss/cost_critic"], cost, "loss/cost_critic")
    close(metrics["loss/actor"], actor, "loss/actor")
    close(metrics["loss/lambda"], lam, "loss/lambda")
    compared = 0
    for name, view in views(model).items():
        if name in fix["grads"]:
            ours = view(lambda p: grads[id(p)])
            close(ours, fix["grads"][name], f"gradient {name}")
            compared += 1
        close(view(lambda p: p.detach()), fix["after"][name], f"{name} after the update", floor=0.01 * lr)
    assert compared == len(fix["grads"])


def test_our_defaults_do_not_pass_the_cross_check():
    """The check can fail: with our defaults (x̂0 clip, exact schedule, ε-head at tanh(x), ...) the same update from
    the same weights, batch and draws gives another critic loss (through the chain's target action) and actor loss."""
    fix = fixture("ddpm")
    model = our_learner("ddpm", fix["settings"], preset="algd")
    load_their_weights(model, fix["before"])
    with replayed_draws(fix):
        metrics = model.update(batch_of(fix))
    critic, _, actor, _ = fix["losses"]
    with pytest.raises(AssertionError, match="loss/critic"):
        close(metrics["loss/critic"], critic, "loss/critic")
    with pytest.raises(AssertionError, match="loss/actor"):
        close(metrics["loss/actor"], actor, "loss/actor")
