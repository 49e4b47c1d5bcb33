"""Safety-Gymnasium navigation tasks (``env=PointButton`` …, or any ``Safety…-v0`` id) as TorchRL envs."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

from algd.envs.base import AlgdEnv, EnvInfo, import_gymnasium
from algd.rng import mt19937_from_dict, mt19937_to_dict

gymnasium = import_gymnasium()


def import_safety_gymnasium():
    """Import safety_gymnasium (gymnasium-robotics' import-time notice silenced)."""
    import_gymnasium()
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics  # noqa: F401
    import safety_gymnasium

    return safety_gymnasium


class SafetyGymFactory:
    """Builds a Safety-Gymnasium task wrapped for TorchRL.

    ``fixed_layout=True`` (paper protocol) draws the object layout once from ``layout_seed`` and freezes it for every
    later reset; otherwise layouts are re-drawn each episode from the env RNG, seeded by the run seed.
    """

    def __init__(
        self, name: str, id: str, max_episode_steps: int, cost_limit: float, fixed_layout: bool, layout_seed: int = 0
    ):
        self.info = EnvInfo(
            name=name, episode_length=int(max_episode_steps), cost_limit=float(cost_limit), cost_done_mask=False
        )
        self.id, self.fixed_layout, self.layout_seed = id, bool(fixed_layout), int(layout_seed)

    def __call__(self, seed: int) -> EnvBase:
        return self._make(seed)

    def render_env(self, seed: int, width: int, height: int, camera: str | None = "track") -> EnvBase:
        """The env of ``__call__(seed)`` that can also draw RGB frames (``render_frame()``), for videos only:
        rendering never slows down the training env. ``camera``: a Safety-Gymnasium camera name (``track`` follows
        the agent from above, ``fixednear``/``fixedfar`` see the whole arena, ``vision`` is the agent's own view)."""
        return self._make(
            seed, render_mode="rgb_array", width=int(width), height=int(height), camera_name=camera or "track"
        )

    def _make(self, seed: int, **render) -> EnvBase:
        safety_gymnasium = import_safety_gymnasium()
        raw = safety_gymnasium.make(self.id, max_episode_steps=self.info.episode_length, **render)
        if self.fixed_layout:
            # Seeding is refused once the layout is frozen, so seed first, then freeze.
            raw.reset(seed=self.layout_seed)
            raw.unwrapped.task.mechanism_conf.randomize_layout = False
        else:
            raw.reset(seed=int(seed))
        return SafetyGymEnv(EpisodeRng(raw))


class SafetyGymEnv(AlgdEnv):
    """A gymnasium env whose ``step`` returns Safety-Gymnasium's 6-tuple ``(obs, reward, cost, terminated,
    truncated, info)``, as a TorchRL env with float32 observations, ``cost`` (shape ``[]``, at the root and in
    ``next``, as TorchRL's ``SafetyGymnasiumWrapper`` lays it out), ``reward`` ``[1]`` and the three done flags.

    It does what ``TransformedEnv(SafetyGymnasiumWrapper(env), DoubleToFloat())`` does, in one ``_step`` that reads the
    6-tuple straight into tensors: the generic wrapper's per-step machinery (action/observation readers, spec
    encoding, the float64 → float32 transform and its inverse on the action) cost ≈ 0.25 ms per step, a third of a
    PointGoal1 step (docs/performance.md). Values are the same: float64 → float32 casts, actions passed in the action
    space's dtype. Observations are always copied, so an env that reuses its observation array cannot change them.
    One key more: ``goal_met`` ([1], bool), the task's ``info["goal_met"]`` (the goal was reached at this step; False
    where the task has no goal), which the reference code's reward mask reads (``reward_done_on_goal``)."""

    def __init__(self, env):
        from torchrl.envs.libs.gym import convert_box_spec  # the converter TorchRL's gym wrappers use for Box spaces

        super().__init__(batch_size=torch.Size([]))
        self._env = env
        self._act_dtype = env.action_space.dtype
        self.observation_spec = Composite(
            observation=convert_box_spec(env.observation_space, dtype=torch.float32, device="cpu"),
            cost=Unbounded(shape=(), dtype=torch.float32, device="cpu"),
            goal_met=Categorical(2, shape=(1,), dtype=torch.bool, device="cpu"),
        )
        self.action_spec = convert_box_spec(env.action_space, dtype=torch.float32, device="cpu")
        self.reward_spec = Unbounded(shape=(1,), dtype=torch.float32, device="cpu")
        flag = Categorical(2, shape=(1,), dtype=torch.bool, device="cpu")
        self.full_done_spec = Composite(done=flag, terminated=flag.clone(), truncated=flag.clone())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").numpy().astype(self._act_dtype, copy=False)
        obs, reward, cost, terminated, truncated, info = self._env.step(action)
        terminated, truncated = bool(terminated), bool(truncated)
        return TensorDict(
            observation=self._obs(obs),
            cost=torch.tensor(float(cost), dtype=torch.float32),
            goal_met=torch.tensor([bool(info.get("goal_met", False))]),
            reward=torch.tensor([float(reward)], dtype=torch.float32),
            done=torch.tensor([terminated or truncated]),
            terminated=torch.tensor([terminated]),
            truncated=torch.tensor([truncated]),
        )

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        obs, _ = self._env.reset(**kwargs)
        false = torch.zeros(1, dtype=torch.bool)
        return TensorDict(
            observation=self._obs(obs),
            cost=torch.zeros((), dtype=torch.float32),
            goal_met=false.clone(),
            done=false,
            terminated=false.clone(),
            truncated=false.clone(),
        )

    @staticmethod
    def _obs(obs) -> torch.Tensor:
        return torch.from_numpy(np.asarray(obs)).to(torch.float32, copy=True)

    def _set_seed(self, seed: int | None) -> None:
        self.reset(seed=seed)

    def close(self, *, raise_if_closed: bool = True):
        self._env.close()
        super().close(raise_if_closed=raise_if_closed)

    @property
    def gym_env(self):
        """The wrapped gymnasium env (Safety-Gymnasium's 6-tuple ``step``)."""
        return self._env

    def episode_rng_state(self) -> dict | None:
        return self._env.episode_rng if isinstance(self._env, EpisodeRng) else None

    def restore_episode_rng(self, state: dict | None) -> None:
        if state and isinstance(self._env, EpisodeRng):
            self._env.set_rng(state)
        else:
            super().restore_episode_rng(state)

    def reseed(self, seed: int) -> None:
        """A fixed-layout Safety-Gym env re-seeds itself at every reset (and refuses a seed): nothing to do there."""
        task = safety_task(self._env)
        if task is not None and not task.mechanism_conf.randomize_layout:
            return
        super().reseed(seed)

    def render_frame(self):
        return self._env.render()


def safety_task(env):
    """The Safety-Gymnasium task behind a gymnasium env, or None (a plain gymnasium MuJoCo env: velocity tasks)."""
    return getattr(env.unwrapped, "task", None)


class EpisodeRng(gymnasium.Wrapper):
    """Records the RNG a reset draws from just before every reset: the Safety-Gymnasium task RNG (a
    ``np.random.RandomState``, key ``safety_gym``) or, for a gymnasium MuJoCo env (velocity tasks), its ``np_random``
    (a ``np.random.Generator``, key ``numpy_generator``)."""

    def __init__(self, env):
        super().__init__(env)
        self.episode_rng: dict | None = None

    def _rng(self):
        task = safety_task(self.env)
        return task.random_generator.random_generator if task is not None else self.env.unwrapped.np_random

    def reset(self, **kwargs):
        rng = self._rng()
        if isinstance(rng, np.random.RandomState):
            self.episode_rng = {"safety_gym": mt19937_to_dict(rng.get_state())}
        else:
            self.episode_rng = {"numpy_generator": rng.bit_generator.state}
        return self.env.reset(**kwargs)

    def set_rng(self, state: dict) -> None:
        rng = self._rng()
        if "safety_gym" in state and isinstance(rng, np.random.RandomState):
            rng.set_state(mt19937_from_dict(state["safety_gym"]))
        elif "numpy_generator" in state and isinstance(rng, np.random.Generator):
            rng.bit_generator.state = state["numpy_generator"]
        else:
            raise ValueError(f"the checkpoint's env RNG state ({sorted(state)}) does not fit env {self.spec.id}")

    def render(self):
        task = safety_task(self.env)
        # Before the offscreen GL context exists: no multisampling, ~2.5× faster in software.
        if task is not None and not task._viewers:
            task.model.vis.quality.offsamples = 0
        return self.env.render()

    def close(self):
        task = safety_task(self.env)
        if task is None:
            return super().close()
        # Free the offscreen renderers now: left to the garbage collector at interpreter exit, their EGL contexts
        # print EGLError tracebacks (safety_gymnasium never closes them).
        for viewer in task._viewers.values():
            viewer.close()
        task._viewers.clear()
        task.viewer = None
        super().close()
