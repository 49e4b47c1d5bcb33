"""What every algd environment offers the rest of the pipeline.

Every factory (``env=<name>``) is called with a seed and returns an :class:`AlgdEnv`: a TorchRL ``EnvBase`` whose
transitions carry ``("next", "cost")`` (float32, shape ``[]``), ``("next", "reward")`` (shape ``[1]``) and the
``done``/``terminated``/``truncated`` flags, so the rest of the pipeline never branches on the environment kind.
A factory also has ``info`` (:class:`EnvInfo`) and ``render_env(seed, width, height, camera)``.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch
from torchrl.envs import EnvBase


@dataclass
class EnvInfo:
    """What the rest of the pipeline needs to know about a task (runtime shapes come from the env specs)."""

    name: str
    episode_length: int
    cost_limit: float
    cost_done_mask: bool  # whether a true termination also ends the cost bootstrap (False on Safety-Gym)
    eval_cost_discount: float | None = None  # γ when the limit is a γ-discounted episode cost; None: undiscounted


def episode_cost(costs: torch.Tensor, discount: float | None = None) -> float:
    """An episode's cost as a protocol counts it: the plain sum, or Σ_t γ^t·c_t (t from 0) with ``discount`` = γ."""
    costs = costs.reshape(-1).double()
    if discount is None:
        return costs.sum().item()
    return (costs * discount ** torch.arange(costs.numel(), dtype=torch.float64)).sum().item()


class AlgdEnv(EnvBase):
    """A TorchRL env with the episode-RNG snapshot, re-seeding and rendering the pipeline relies on.

    A resumed run rebuilds its env and resets it. To replay the interrupted episode exactly (and, at an episode
    boundary, to continue exactly as an uninterrupted run would), each env records the state of its own RNG just
    before its latest reset (:meth:`episode_rng_state`); a checkpoint stores that snapshot and a resume restores it
    (:meth:`restore_episode_rng`) before the first reset. An env that cannot tell returns None."""

    def episode_rng_state(self) -> dict | None:
        """The env's own RNG state just before its current episode's reset (None if the env cannot tell)."""
        return None

    def restore_episode_rng(self, state: dict | None) -> None:
        """Set the env RNG so that its next reset starts the same episode as the one ``state`` was taken from."""
        if state:
            raise ValueError(f"the checkpoint's env RNG state ({sorted(state)}) does not fit env {type(self).__name__}")

    def reseed(self, seed: int) -> None:
        """Seed the env's episode stream (evaluation episodes start from it)."""
        self.set_seed(int(seed))

    def render_frame(self) -> np.ndarray:
        """The current RGB frame (uint8, [H, W, 3]) of an env built by a factory's ``render_env``."""
        raise NotImplementedError(f"{type(self).__name__} does not render")


def import_gymnasium():
    """``import gymnasium`` without gymnasium-robotics' import-time notice about Adroit tasks."""
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium

    return gymnasium
