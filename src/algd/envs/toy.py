"""A fast torch task (``env=toy``, no MuJoCo): a 2-D point reaches a goal around a hazard on the straight path."""

from __future__ import annotations

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Composite, Unbounded
from torchrl.envs import EnvBase

from algd.envs.base import AlgdEnv, EnvInfo


class ToyHazardEnv(AlgdEnv):
    """A 2-D point must reach a goal; a circular hazard sits on the straight path and costs 1 per step inside.

    Start ≈ (−1, 0) (± ``start_noise``), goal (1, 0), hazard centred at the origin with radius ``hazard_radius``.
    Action a ∈ [−1, 1]² moves the point by ``speed``·a. Reward −``reward_scale``·‖p − goal‖ per step; the episode is
    truncated after ``max_episode_steps``. The straight line (best without a constraint) spends ≈ 2r/speed steps in
    the hazard, far above the default cost limit; the detour around the hazard is safe and only slightly slower
    (``reward_scale`` > 1 makes that delay cost more return against the same cost, i.e. the constraint costlier).
    Observation: [p, goal − p, hazard − p] (6 values).
    """

    GOAL = (1.0, 0.0)
    START = (-1.0, 0.0)

    def __init__(
        self,
        max_episode_steps: int = 50,
        hazard_radius: float = 0.5,
        speed: float = 0.1,
        start_noise: float = 0.1,
        reward_scale: float = 1.0,
        seed: int | None = None,
        device: str = "cpu",
    ):
        super().__init__(device=device, batch_size=torch.Size([]))
        self.max_episode_steps, self.hazard_radius = int(max_episode_steps), float(hazard_radius)
        self.speed, self.start_noise, self.reward_scale = float(speed), float(start_noise), float(reward_scale)
        self.observation_spec = Composite(observation=Unbounded(shape=(6,)), cost=Unbounded(shape=()))
        self.action_spec = Bounded(low=-1.0, high=1.0, shape=(2,))
        self.reward_spec = Unbounded(shape=(1,))
        self._goal, self._start = torch.tensor(self.GOAL), torch.tensor(self.START)
        self._rng = torch.Generator()
        self.episode_rng: torch.Tensor | None = None
        self._pos, self._t = self._start.clone(), 0
        self._set_seed(0 if seed is None else seed)

    def _obs(self) -> torch.Tensor:
        return torch.cat([self._pos, self._goal - self._pos, -self._pos])

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        self.episode_rng = self._rng.get_state()
        noise = (torch.rand(2, generator=self._rng) * 2 - 1) * self.start_noise
        self._pos, self._t = self._start + noise, 0
        false = torch.zeros(1, dtype=torch.bool)
        return TensorDict(
            observation=self._obs(), cost=torch.zeros(()), done=false, terminated=false.clone(), truncated=false.clone()
        )

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict["action"].clamp(-1.0, 1.0)
        self._pos = (self._pos + self.speed * action).clamp(-2.0, 2.0)
        self._t += 1
        cost = (self._pos.norm() < self.hazard_radius).float()
        reward = -self.reward_scale * (self._pos - self._goal).norm().reshape(1)
        truncated = torch.tensor([self._t >= self.max_episode_steps])
        return TensorDict(
            observation=self._obs(),
            cost=cost,
            reward=reward,
            done=truncated.clone(),
            terminated=torch.zeros(1, dtype=torch.bool),
            truncated=truncated,
        )

    def _set_seed(self, seed: int | None) -> None:
        self._rng.manual_seed(int(seed) if seed is not None else 0)

    def episode_rng_state(self) -> dict | None:
        return {"toy": self.episode_rng} if self.episode_rng is not None else None

    def restore_episode_rng(self, state: dict | None) -> None:
        if state and "toy" in state:
            self._rng.set_state(state["toy"])
        else:
            super().restore_episode_rng(state)

    def render_frame(self) -> np.ndarray:
        return self.render(*getattr(self, "render_size", (64, 64)))

    def render(self, width: int = 64, height: int = 64) -> np.ndarray:
        """An RGB frame (uint8, [height, width, 3]) of the square [−2, 2]²: the hazard disc (red; darker while the
        point is inside), the goal (green) and the point (blue)."""
        ys, xs = np.meshgrid(np.linspace(2, -2, height), np.linspace(-2, 2, width), indexing="ij")
        frame = np.full((height, width, 3), 235, dtype=np.uint8)
        pos = self._pos.numpy()
        inside = bool(np.linalg.norm(pos) < self.hazard_radius)
        pixel = 4.0 / min(width, height)  # discs at least ~2 pixels wide at any size
        for (cx, cy), radius, color in [
            ((0.0, 0.0), self.hazard_radius, (160, 30, 30) if inside else (230, 120, 120)),
            (self.GOAL, max(0.1, 1.5 * pixel), (40, 170, 60)),
            (tuple(pos), max(0.08, 1.5 * pixel), (40, 70, 200)),
        ]:
            frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = color
        return frame


class ToyFactory:
    """Factory for :class:`ToyHazardEnv` (``env=toy``); it has its own episode length and cost limit."""

    def __init__(
        self,
        name: str = "toy",
        max_episode_steps: int = 50,
        cost_limit: float = 2.0,
        hazard_radius: float = 0.5,
        speed: float = 0.1,
        start_noise: float = 0.1,
        reward_scale: float = 1.0,
    ):
        self.info = EnvInfo(
            name=name, episode_length=int(max_episode_steps), cost_limit=float(cost_limit), cost_done_mask=False
        )
        self.kwargs = dict(
            max_episode_steps=max_episode_steps,
            hazard_radius=hazard_radius,
            speed=speed,
            start_noise=start_noise,
            reward_scale=reward_scale,
        )

    def __call__(self, seed: int) -> EnvBase:
        return ToyHazardEnv(seed=int(seed), **self.kwargs)

    def render_env(self, seed: int, width: int, height: int, camera: str | None = None) -> EnvBase:
        """The env of ``__call__(seed)``; its ``render_frame()`` draws it at ``width`` × ``height`` (no camera)."""
        env = self(seed)
        env.render_size = (int(width), int(height))
        return env
