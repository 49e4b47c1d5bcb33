"""The authors' ALGD agents (github Wenxuan52/ALGD, commit 1f6820b) loaded from a checkout at run time, on the CPU: for
``make bench REF=<checkout>`` (their update's rate beside ours) and ``scripts/reference_fixture.py`` (the recorded
update the parity tests replay). Nothing of their code is in this repository; their files are not modified.

Run-time patch: their agents put everything on ``torch.device("cuda")``; ``torch.device`` as their agent modules see
it returns the CPU.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import numpy as np
import torch

AGENTS = {"ddpm": "agents.algd.ALGD_DDPM", "ve": "agents.algd.ALGD_VESDE"}


class _CpuTorch(types.ModuleType):
    """``torch`` for the authors' agent modules, with ``device(...)`` always the CPU."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def device(*args, **kwargs):
        return torch.device("cpu")


def check_checkout(ref: Path) -> Path:
    ref = Path(ref).expanduser().resolve()
    if not (ref / "agents" / "algd" / "ALGD_DDPM.py").is_file():
        raise SystemExit(f"error: {ref}: no agents/algd/ALGD_DDPM.py there (a checkout of github Wenxuan52/ALGD?)")
    return ref


def reference_agent(
    ref: Path,
    kind: str,
    obs_dim: int,
    act_dim: int,
    hidden: int = 256,
    score_hidden: int = 128,
    ensemble: int = 4,
    steps: int = 5,
    mc_samples: int = 4,
    gamma: float = 0.99,
    cost_gamma: float = 0.99,
    tau: float = 0.005,
    rho: float = 1.0,
    beta: float = 1.0,
    lr: float = 3e-4,
    cost_limit: float = 10.0,
    episode_length: int = 400,
    target_every: int = 2,
):
    """The authors' ``ALGDAgent`` (``kind``: ``ddpm`` or ``ve``) for a Safety-Gym task with these sizes, on the CPU.
    The defaults are their ``configs/algd_ddpm.py`` ones (the task's limit and episode length: PointButton1's)."""
    ref = check_checkout(ref)
    if str(ref) not in sys.path:
        sys.path.insert(0, str(ref))
    module = importlib.import_module(AGENTS[kind])
    module.torch = _CpuTorch("torch")
    args = types.SimpleNamespace(
        gamma=gamma,
        safety_gamma=cost_gamma,
        tau=tau,
        critic_target_update_frequency=target_every,
        rho=rho,
        diffusion_steps_K=steps,
        score_mc_samples=mc_samples,
        beta=beta,
        critic_hidden_size=hidden,
        qc_ens_size=ensemble,
        score_model_hidden_dim=score_hidden,
        lr=lr,
        qc_lr=lr,
        safetygym=True,
        cost_lim=cost_limit,
        epoch_length=episode_length,
    )
    space = types.SimpleNamespace(
        shape=(act_dim,), low=-np.ones(act_dim, np.float32), high=np.ones(act_dim, np.float32)
    )
    return module.ALGDAgent(obs_dim, space, args)


def reference_batch(batch: int, obs_dim: int, act_dim: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A replay batch as tensors: state, action, reward, cost, next_state and the reward mask (0: goal met)."""
    return {
        "state": torch.randn(batch, obs_dim, generator=generator),
        "action": torch.rand(batch, act_dim, generator=generator) * 2 - 1,
        "reward": torch.randn(batch, generator=generator),
        "cost": (torch.rand(batch, generator=generator) < 0.3).float(),
        "next_state": torch.randn(batch, obs_dim, generator=generator),
        "mask": (torch.rand(batch, generator=generator) > 0.25).float(),
    }


def as_memory(batch: dict[str, torch.Tensor]) -> tuple:
    """The tuple their ``update_parameters`` takes (numpy arrays, reward and cost side by side)."""
    return (
        batch["state"].numpy(),
        batch["action"].numpy(),
        torch.stack([batch["reward"], batch["cost"]], -1).numpy(),
        batch["next_state"].numpy(),
        batch["mask"].numpy(),
    )


def authors_updates_per_s(ref: Path, obs_dim: int, act_dim: int, batch: int, updates: int, repeats: int) -> float:
    """Median updates/s of the authors' DDPM ``update_parameters`` (their learner only: numpy batch in, as their
    training loop gives it) at these sizes with their default widths."""
    from algd.bench.timing import median_rate

    torch.manual_seed(0)
    agent = reference_agent(ref, "ddpm", obs_dim, act_dim)
    memory = as_memory(reference_batch(batch, obs_dim, act_dim, torch.Generator().manual_seed(0)))
    for i in range(3):
        agent.update_parameters(memory, i)

    def run():
        for i in range(updates):
            agent.update_parameters(memory, i)

    return median_rate(run, updates, repeats)
