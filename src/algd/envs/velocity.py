"""MuJoCo velocity tasks (``env=Hopper|HalfCheetah|Ant|Humanoid|Walker2d|Swimmer``) as TorchRL envs."""

from __future__ import annotations

import numpy as np
from torchrl.envs import EnvBase

from algd.envs.base import EnvInfo, import_gymnasium
from algd.envs.safety_gym import EpisodeRng, SafetyGymEnv, import_safety_gymnasium

gymnasium = import_gymnasium()


class SpeedCost(gymnasium.Wrapper):
    """A gymnasium MuJoCo locomotion env as a constrained task (CAL/ALGD, after FOCOPS): per-step cost = speed,
    |x-velocity| or, with ``planar``, sqrt(vx² + vy²) (from the ``x_velocity``/``y_velocity`` the env reports in its
    info); observations cut to their first ``obs_dims`` values. ``step`` returns Safety-Gymnasium's 6-tuple
    ``(obs, reward, cost, terminated, truncated, info)``, so the Safety-Gymnasium TorchRL wrapper takes it as is."""

    def __init__(self, env, planar: bool = False, obs_dims: int | None = None):
        super().__init__(env)
        self.planar, self.obs_dims = bool(planar), obs_dims
        if obs_dims is not None:
            space = env.observation_space
            self.observation_space = gymnasium.spaces.Box(
                space.low[:obs_dims], space.high[:obs_dims], dtype=space.dtype
            )

    def _obs(self, obs):
        return obs if self.obs_dims is None else obs[: self.obs_dims]

    def speed(self, info: dict) -> float:
        vx = float(info["x_velocity"])
        return float(np.hypot(vx, info["y_velocity"])) if self.planar else abs(vx)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return self._obs(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._obs(obs), reward, self.speed(info), terminated, truncated, info


class VelocityFactory:
    """A MuJoCo velocity task (``env=Hopper|HalfCheetah|Ant|Humanoid|Walker2d|Swimmer``) wrapped for TorchRL.

    - ``protocol='paper'`` (CAL/ALGD): gymnasium's ``<Name>-v4`` under :class:`SpeedCost`; ``cost_limit`` is a
      γ-discounted episode sum (γ = ``cost_gamma``), so h is that limit and evaluations report discounted costs.
    - ``protocol='standard'``: Safety-Gymnasium's ``Safety<Name>Velocity-v1`` with its own cost (1 per step above
      its velocity threshold) and an undiscounted episode limit.

    A true termination (e.g. the Hopper falling) ends both the reward and the cost bootstrap (spec §2).
    ``ids`` and ``limits`` are the per-protocol tables the config's ``id`` and ``cost_limit`` are read from.
    """

    def __init__(
        self,
        name: str,
        protocol: str,
        id: str,
        cost_limit: float,
        max_episode_steps: int,
        cost_gamma: float,
        planar: bool = False,
        obs_dims: int | None = None,
        ids: dict | None = None,
        limits: dict | None = None,
    ):
        if protocol not in ("paper", "standard"):
            raise ValueError(f"velocity task {name}: unknown protocol {protocol!r} (paper or standard)")
        discounted = protocol == "paper"
        self.info = EnvInfo(
            name=name,
            episode_length=int(max_episode_steps),
            cost_limit=float(cost_limit),
            cost_done_mask=True,
            eval_cost_discount=float(cost_gamma) if discounted else None,
        )
        self.id, self.protocol, self.planar, self.obs_dims = id, protocol, bool(planar), obs_dims

    def __call__(self, seed: int) -> EnvBase:
        if self.protocol == "paper":
            raw = SpeedCost(
                gymnasium.make(self.id, max_episode_steps=self.info.episode_length), self.planar, self.obs_dims
            )
        else:
            raw = import_safety_gymnasium().make(self.id, max_episode_steps=self.info.episode_length)
        raw.reset(seed=int(seed))
        return SafetyGymEnv(EpisodeRng(raw))
