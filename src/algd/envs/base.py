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
from tensordict import TensorDictBase
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
    """A TorchRL env with the episode snapshot, re-seeding and rendering the pipeline relies on.

    A resumed run rebuilds its env and resets it. To continue exactly where the interrupted run was, even mid-episode,
    each env records the state of its own RNG just before its latest reset (:meth:`episode_rng_state`); a checkpoint
    stores that snapshot with the actions taken since that reset, and a resume hands both to :meth:`resume_episode`:
    the next reset restores the RNG, resets, and replays the actions, so it returns the state the interrupted run was
    in (physics, timers, objects, goal draws). An env that cannot tell its RNG state returns None and restarts its
    episode from a fresh reset instead."""

    _replay: tuple[torch.Tensor, torch.Tensor | None] | None = None
    replay_error: float | None = None  # max |Δ observation| of the latest replay against the recorded one

    def episode_rng_state(self) -> dict | None:
        """The env's own RNG state just before its current episode's reset (None if the env cannot tell)."""
        return None

    def restore_episode_rng(self, state: dict | None) -> None:
        """Set the env RNG so that its next reset starts the same episode as the one ``state`` was taken from."""
        if state:
            raise ValueError(f"the checkpoint's env RNG state ({sorted(state)}) does not fit env {type(self).__name__}")

    def resume_episode(
        self, rng: dict | None, actions: torch.Tensor | None = None, observation: torch.Tensor | None = None
    ) -> None:
        """Make the next reset return the state after ``actions`` (taken from the reset ``rng`` was recorded
        before); ``observation``, the one the interrupted run saw last, is checked against the replayed one
        (:attr:`replay_error`). Without an RNG state the actions cannot be replayed and are ignored."""
        self.restore_episode_rng(rng)
        self._replay = (actions, observation) if rng and actions is not None and len(actions) else None

    def reset(self, *args, **kwargs) -> TensorDictBase:
        td = super().reset(*args, **kwargs)
        if self._replay is None:
            return td
        (actions, expected), self._replay = self._replay, None
        keys = list(td.keys(True, True))
        for action in actions:
            td = self.step(td.set("action", action.to(self.action_spec.dtype)))["next"].select(*keys)
            if bool(td["done"].any()):
                raise RuntimeError(f"{type(self).__name__}: the replayed episode ended before its last action")
        if expected is not None:
            self.replay_error = float((td["observation"] - expected).abs().max())
        return td

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
