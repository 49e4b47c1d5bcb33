"""Record one update of the authors' ALGD (github Wenxuan52/ALGD, commit 1f6820b) on CPU, for the parity tests.

    .venv/bin/python scripts/reference_fixture.py --ref <checkout of Wenxuan52/ALGD>      # writes tests/data/

The authors' code is imported from ``--ref`` (nothing of it is copied here) and run once per agent (``ALGD_DDPM``,
``ALGD_VESDE``) at small widths, from weights drawn with a fixed seed and a fixed replay batch. The script records
what the update consumes and produces, as plain tensors: the weights before the step, the batch, every random draw
the update makes (normal draws and integer draws, in call order), each loss at its ``backward`` call, the gradients
each optimiser steps with (by parameter name), and every parameter after the update (targets and log λ included).
``tests/test_parity.py`` feeds the same weights, batch and draws to our learner under ``experiment=algd_reference``
/ ``algd_reference_ve`` and compares. The run is deterministic: the same checkout gives the same file, bit for bit.

The authors' agents are loaded by :mod:`algd.bench.reference` (on the CPU, their files unmodified).
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

import torch

from algd.bench.reference import AGENTS, as_memory, check_checkout, reference_agent, reference_batch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data"

# The fixture's sizes and settings (the test builds our learner with the same ones).
SETTINGS = dict(
    obs_dim=6,
    act_dim=2,
    batch=16,
    hidden=32,  # the critics' widths (two layers) and the diffusion trunk's (three layers)
    ensemble=4,
    steps=5,
    mc_samples=4,
    gamma=0.99,
    cost_gamma=0.99,
    tau=0.005,
    rho=1.0,
    beta=1.0,
    lr=3e-4,
    cost_limit=2.0,
    episode_length=50,
    seed=7,
)


def agent_for(ref: Path, kind: str):
    s = SETTINGS
    sizes = {k: s[k] for k in ("obs_dim", "act_dim", "hidden", "ensemble", "steps", "mc_samples", "gamma")}
    rest = {k: s[k] for k in ("cost_gamma", "tau", "rho", "beta", "lr", "cost_limit", "episode_length")}
    return reference_agent(ref, kind, score_hidden=s["hidden"], target_every=1, **sizes, **rest)


def named_parameters(agent) -> dict[str, torch.Tensor]:
    """Every parameter of the agent by ``<network>.<parameter>`` (and ``log_lam``)."""
    nets = {
        "critic": agent.critic,
        "critic_target": agent.critic_target,
        "safety_critics": agent.safety_critics,
        "safety_critic_targets": agent.safety_critic_targets,
        "policy": agent.policy,
    }
    out = {f"{name}.{k}": v for name, net in nets.items() for k, v in net.named_parameters()}
    out["log_lam"] = agent.log_lam
    return out


def state(agent) -> dict:
    return {name: p.detach().clone() for name, p in named_parameters(agent).items()}


@contextmanager
def recording(agent, record: dict):
    """Record random draws, losses at ``backward`` and the gradients each optimiser steps with."""
    real = {name: getattr(torch, name) for name in ("randn", "randn_like", "randint")}
    backward = torch.Tensor.backward

    def draw(name):
        def wrapped(*args, **kwargs):
            out = real[name](*args, **kwargs)
            record["ints" if name == "randint" else "normals"].append(out.detach().clone())
            return out

        return wrapped

    def loss_backward(tensor, *args, **kwargs):
        record["losses"].append(tensor.detach().clone())
        return backward(tensor, *args, **kwargs)

    optimizers = {
        "critic": agent.critic_optimizer,
        "safety_critics": agent.safety_critic_optimizer,
        "policy": agent.actor_optimizer,
        "log_lam": agent.log_lam_optimizer,
    }
    steps, names = {}, {id(p): name for name, p in named_parameters(agent).items()}
    for name, opt in optimizers.items():
        steps[name] = opt.step

        def step(*args, _name=name, _opt=opt, **kwargs):
            for p in (p for group in _opt.param_groups for p in group["params"]):
                if p.grad is not None:  # (the VE agent's unused ε-head has none)
                    record["grads"][names[id(p)]] = p.grad.detach().clone()
            return steps[_name](*args, **kwargs)

        opt.step = step
    for name in real:
        setattr(torch, name, draw(name))
    torch.Tensor.backward = loss_backward
    try:
        yield
    finally:
        for name, fn in real.items():
            setattr(torch, name, fn)
        torch.Tensor.backward = backward
        for name, opt in optimizers.items():
            opt.step = steps[name]


def record_update(ref: Path, kind: str) -> dict:
    s = SETTINGS
    torch.manual_seed(s["seed"])
    agent = agent_for(ref, kind)
    batch = reference_batch(s["batch"], s["obs_dim"], s["act_dim"], torch.Generator().manual_seed(s["seed"] + 1))
    memory = as_memory(batch)
    before = state(agent)
    record = {"normals": [], "ints": [], "losses": [], "grads": {}}
    torch.manual_seed(s["seed"] + 2)
    with recording(agent, record):
        agent.update_parameters(memory, 0)
    return {
        "settings": dict(s),
        "h": float(agent.target_cost),
        "batch": batch,
        "before": before,
        "after": state(agent),
        **record,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", type=Path, required=True, help="a checkout of github Wenxuan52/ALGD (commit 1f6820b)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT})")
    args = parser.parse_args(argv)
    check_checkout(args.ref)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in AGENTS:
        fixture = record_update(args.ref, kind)
        path = args.out / f"reference_update_{kind}.pt"
        torch.save(fixture, path)
        print(
            f"{path}: {len(fixture['normals'])} normal and {len(fixture['ints'])} integer draws, "
            f"losses {[round(float(v), 6) for v in fixture['losses']]}, {path.stat().st_size / 1024:.0f} KB"
        )


if __name__ == "__main__":
    main()
