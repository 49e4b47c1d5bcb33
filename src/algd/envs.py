"""Environments: Safety-Gymnasium and the MuJoCo velocity tasks through TorchRL, and a small torch toy task.

Every factory returns a TorchRL ``EnvBase`` whose transitions carry ``("next", "cost")`` (float32, shape ``[]``),
``("next", "reward")`` (shape ``[1]``) and ``done``/``terminated``/``truncated`` flags, so the rest of the pipeline
never branches on the environment kind.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import Bounded, Categorical, Composite, Unbounded
from torchrl.envs import EnvBase

os.environ.setdefault("MUJOCO_GL", "egl")  # headless rendering; must be set before mujoco is imported
with contextlib.redirect_stderr(io.StringIO()):  # gymnasium-robotics' import-time notice about Adroit tasks
    import gymnasium


def per_step_cost_target(cost_limit: float, gamma: float, episode_length: int, discounted: bool = False) -> float:
    """h, the target of Q̂c (an expected γ-discounted sum of future costs, "Q units").

    An undiscounted episode limit d (Safety-Gym) is spread evenly over the T steps and discounted:
    h = d·(1 − γ^T) / ((1 − γ)·T), which is d itself at γ = 1. A limit that already is a γ-discounted episode sum
    (``discounted``: the velocity tasks of the paper protocol, spec §2) is in Q units as it stands: h = D."""
    if discounted or gamma == 1.0:
        return float(cost_limit)
    return cost_limit * (1.0 - gamma**episode_length) / ((1.0 - gamma) * episode_length)


def episode_cost(costs: torch.Tensor, discount: float | None = None) -> float:
    """An episode's cost as a protocol counts it: the plain sum, or Σ_t γ^t·c_t (t from 0) with ``discount`` = γ."""
    costs = costs.reshape(-1).double()
    if discount is None:
        return costs.sum().item()
    return (costs * discount ** torch.arange(costs.numel(), dtype=torch.float64)).sum().item()


@dataclass
class EnvInfo:
    """What the rest of the pipeline needs to know about a task (runtime shapes come from the env specs)."""

    name: str
    episode_length: int
    cost_limit: float
    cost_done_mask: bool  # whether a true termination also ends the cost bootstrap (False on Safety-Gym)
    eval_cost_discount: float | None = None  # γ when the limit is a γ-discounted episode cost; None: undiscounted


# ------------------------------------------------------------------------------------------- episode RNG snapshot
# A resumed run rebuilds its env and resets it. To replay the interrupted episode exactly (and, at an episode
# boundary, to continue exactly as an uninterrupted run would), each env records the state of its own RNG just
# before its latest reset; a checkpoint stores that snapshot and a resume restores it before the first reset.

def mt19937_to_dict(state: tuple) -> dict:
    """A numpy MT19937 state tuple in a form ``torch.load(weights_only=True)`` accepts."""
    _, keys, pos, has_gauss, cached = state
    return {"keys": torch.from_numpy(keys.astype("int64")), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}


def mt19937_from_dict(state: dict) -> tuple:
    return "MT19937", state["keys"].numpy().astype("uint32"), state["pos"], state["has_gauss"], state["cached"]


def _base(env):
    return getattr(env, "base_env", env)


def episode_rng_state(env) -> dict | None:
    """The env's own RNG state just before its current episode's reset (None if the env cannot tell)."""
    base = _base(env)
    if isinstance(base, ToyHazardEnv):
        return {"toy": base.episode_rng} if base.episode_rng is not None else None
    raw = getattr(base, "_env", None)
    if isinstance(raw, _EpisodeRng) and raw.episode_rng is not None:
        return {"safety_gym": raw.episode_rng}
    return None


def restore_episode_rng(env, state: dict | None) -> None:
    """Set the env RNG so that its next reset starts the same episode as the one ``state`` was taken from."""
    if not state:
        return
    base = _base(env)
    if "toy" in state and isinstance(base, ToyHazardEnv):
        base._rng.set_state(state["toy"])
    elif "safety_gym" in state and isinstance(getattr(base, "_env", None), _EpisodeRng):
        base._env.set_rng(state["safety_gym"])
    else:
        raise ValueError(f"the checkpoint's env RNG state ({sorted(state)}) does not fit env {type(base).__name__}")


def reseed(env, seed: int) -> None:
    """Seed the env's episode stream (a fixed-layout Safety-Gym env re-seeds itself at every reset, and refuses)."""
    raw = getattr(_base(env), "_env", None)
    if isinstance(raw, _EpisodeRng) and not raw.unwrapped.task.mechanism_conf.randomize_layout:
        return
    env.set_seed(int(seed))


def import_safety_gymnasium():
    """Import safety_gymnasium headless (the Adroit notice is silenced with the gymnasium import above)."""
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium_robotics  # noqa: F401
    import safety_gymnasium

    return safety_gymnasium


class SafetyGymFactory:
    """Builds a Safety-Gymnasium task wrapped for TorchRL.

    ``fixed_layout=True`` (paper protocol) draws the object layout once from ``layout_seed`` and freezes it for every
    later reset; otherwise layouts are re-drawn each episode from the env RNG, seeded by the run seed.
    """

    def __init__(self, name: str, id: str, max_episode_steps: int, cost_limit: float, fixed_layout: bool,
                 layout_seed: int = 0):
        self.info = EnvInfo(name=name, episode_length=int(max_episode_steps), cost_limit=float(cost_limit),
                            cost_done_mask=False)
        self.id, self.fixed_layout, self.layout_seed = id, bool(fixed_layout), int(layout_seed)

    def __call__(self, seed: int) -> EnvBase:
        return self._make(seed)

    def render_env(self, seed: int, width: int, height: int, camera: str | None = "track") -> EnvBase:
        """The env of ``__call__(seed)`` that can also draw RGB frames (:func:`render_frame`), for videos only:
        rendering never slows down the training env. ``camera``: a Safety-Gymnasium camera name (``track`` follows
        the agent from above, ``fixednear``/``fixedfar`` see the whole arena, ``vision`` is the agent's own view)."""
        return self._make(seed, render_mode="rgb_array", width=int(width), height=int(height),
                          camera_name=camera or "track")

    def _make(self, seed: int, **render) -> EnvBase:
        safety_gymnasium = import_safety_gymnasium()
        raw = safety_gymnasium.make(self.id, max_episode_steps=self.info.episode_length, **render)
        if self.fixed_layout:
            # Seeding is refused once the layout is frozen, so seed first, then freeze.
            raw.reset(seed=self.layout_seed)
            raw.unwrapped.task.mechanism_conf.randomize_layout = False
        else:
            raw.reset(seed=int(seed))
        return SafetyGymEnv(_EpisodeRng(raw))


class SafetyGymEnv(EnvBase):
    """A gymnasium env whose ``step`` returns Safety-Gymnasium's 6-tuple ``(obs, reward, cost, terminated,
    truncated, info)``, as a TorchRL env with float32 observations, ``cost`` (shape ``[]``, at the root and in
    ``next``, as TorchRL's ``SafetyGymnasiumWrapper`` lays it out), ``reward`` ``[1]`` and the three done flags.

    It does what ``TransformedEnv(SafetyGymnasiumWrapper(env), DoubleToFloat())`` does, in one ``_step`` that reads the
    6-tuple straight into tensors: the generic wrapper's per-step machinery (action/observation readers, spec
    encoding, the float64 → float32 transform and its inverse on the action) cost ≈ 0.25 ms per step, a third of a
    PointGoal1 step (docs/performance.md). Values are the same: float64 → float32 casts, actions passed in the action
    space's dtype. Observations are always copied, so an env that reuses its observation array cannot change them."""

    def __init__(self, env):
        from torchrl.envs.libs.gym import _gym_to_torchrl_spec_transform

        super().__init__(batch_size=torch.Size([]))
        self._env = env
        self._act_dtype = env.action_space.dtype
        self.observation_spec = Composite(
            observation=_gym_to_torchrl_spec_transform(env.observation_space, dtype=torch.float32, device="cpu"),
            cost=Unbounded(shape=(), dtype=torch.float32, device="cpu"))
        self.action_spec = _gym_to_torchrl_spec_transform(env.action_space, dtype=torch.float32, device="cpu")
        self.reward_spec = Unbounded(shape=(1,), dtype=torch.float32, device="cpu")
        flag = Categorical(2, shape=(1,), dtype=torch.bool, device="cpu")
        self.full_done_spec = Composite(done=flag, terminated=flag.clone(), truncated=flag.clone())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict.get("action").numpy().astype(self._act_dtype, copy=False)
        obs, reward, cost, terminated, truncated, _ = self._env.step(action)
        terminated, truncated = bool(terminated), bool(truncated)
        return TensorDict(observation=self._obs(obs), cost=torch.tensor(float(cost), dtype=torch.float32),
                          reward=torch.tensor([float(reward)], dtype=torch.float32),
                          done=torch.tensor([terminated or truncated]), terminated=torch.tensor([terminated]),
                          truncated=torch.tensor([truncated]))

    def _reset(self, tensordict: TensorDictBase | None = None, **kwargs) -> TensorDictBase:
        obs, _ = self._env.reset(**kwargs)
        false = torch.zeros(1, dtype=torch.bool)
        return TensorDict(observation=self._obs(obs), cost=torch.zeros((), dtype=torch.float32), done=false,
                          terminated=false.clone(), truncated=false.clone())

    @staticmethod
    def _obs(obs) -> torch.Tensor:
        return torch.from_numpy(np.asarray(obs)).to(torch.float32, copy=True)

    def _set_seed(self, seed: int | None) -> None:
        self.reset(seed=seed)

    def close(self, *, raise_if_closed: bool = True):
        self._env.close()
        super().close(raise_if_closed=raise_if_closed)


class _EpisodeRng(gymnasium.Wrapper):
    """Records the Safety-Gymnasium task RNG (a ``np.random.RandomState``) just before every reset."""

    def __init__(self, env):
        super().__init__(env)
        self.episode_rng: dict | None = None

    def _task_rng(self):
        return self.env.unwrapped.task.random_generator.random_generator

    def reset(self, **kwargs):
        self.episode_rng = mt19937_to_dict(self._task_rng().get_state())
        return self.env.reset(**kwargs)

    def set_rng(self, state: dict) -> None:
        self._task_rng().set_state(mt19937_from_dict(state))

    def render(self):
        task = self.env.unwrapped.task
        if not task._viewers:  # before the offscreen GL context exists: no multisampling, ~2.5× faster in software
            task.model.vis.quality.offsamples = 0
        return self.env.render()

    def close(self):
        # Free the offscreen renderers now: left to the garbage collector at interpreter exit, their EGL contexts
        # print EGLError tracebacks (safety_gymnasium never closes them).
        task = self.env.unwrapped.task
        for viewer in task._viewers.values():
            viewer.close()
        task._viewers.clear()
        task.viewer = None
        super().close()


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
            self.observation_space = gymnasium.spaces.Box(space.low[:obs_dims], space.high[:obs_dims],
                                                          dtype=space.dtype)

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

    def __init__(self, name: str, protocol: str, id: str, cost_limit: float, max_episode_steps: int,
                 cost_gamma: float, planar: bool = False, obs_dims: int | None = None, ids: dict | None = None,
                 limits: dict | None = None):
        if protocol not in ("paper", "standard"):
            raise ValueError(f"velocity task {name}: unknown protocol {protocol!r} (paper or standard)")
        discounted = protocol == "paper"
        self.info = EnvInfo(name=name, episode_length=int(max_episode_steps), cost_limit=float(cost_limit),
                            cost_done_mask=True, eval_cost_discount=float(cost_gamma) if discounted else None)
        self.id, self.protocol, self.planar, self.obs_dims = id, protocol, bool(planar), obs_dims

    def __call__(self, seed: int) -> EnvBase:
        if self.protocol == "paper":
            raw = SpeedCost(gymnasium.make(self.id, max_episode_steps=self.info.episode_length), self.planar,
                            self.obs_dims)
        else:
            raw = import_safety_gymnasium().make(self.id, max_episode_steps=self.info.episode_length)
        raw.reset(seed=int(seed))
        return SafetyGymEnv(raw)


class ToyHazardEnv(EnvBase):
    """A 2-D point must reach a goal; a circular hazard sits on the straight path and costs 1 per step inside.

    Start ≈ (−1, 0) (± ``start_noise``), goal (1, 0), hazard centred at the origin with radius ``hazard_radius``.
    Action a ∈ [−1, 1]² moves the point by ``speed``·a. Reward −‖p − goal‖ per step; the episode is truncated after
    ``max_episode_steps``. The straight line (best without a constraint) spends ≈ 2r/speed steps in the hazard, far
    above the default cost limit; the detour around the hazard is safe and only slightly slower.
    Observation: [p, goal − p, hazard − p] (6 values).
    """

    GOAL = (1.0, 0.0)
    START = (-1.0, 0.0)

    def __init__(self, max_episode_steps: int = 50, hazard_radius: float = 0.5, speed: float = 0.1,
                 start_noise: float = 0.1, seed: int | None = None, device: str = "cpu"):
        super().__init__(device=device, batch_size=torch.Size([]))
        self.max_episode_steps, self.hazard_radius = int(max_episode_steps), float(hazard_radius)
        self.speed, self.start_noise = float(speed), float(start_noise)
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
        return TensorDict(observation=self._obs(), cost=torch.zeros(()), done=false, terminated=false.clone(),
                          truncated=false.clone())

    def _step(self, tensordict: TensorDictBase) -> TensorDictBase:
        action = tensordict["action"].clamp(-1.0, 1.0)
        self._pos = (self._pos + self.speed * action).clamp(-2.0, 2.0)
        self._t += 1
        cost = (self._pos.norm() < self.hazard_radius).float()
        reward = -(self._pos - self._goal).norm().reshape(1)
        truncated = torch.tensor([self._t >= self.max_episode_steps])
        return TensorDict(observation=self._obs(), cost=cost, reward=reward, done=truncated.clone(),
                          terminated=torch.zeros(1, dtype=torch.bool), truncated=truncated)

    def _set_seed(self, seed: int | None) -> None:
        self._rng.manual_seed(int(seed) if seed is not None else 0)

    def render(self, width: int = 64, height: int = 64) -> np.ndarray:
        """An RGB frame (uint8, [height, width, 3]) of the square [−2, 2]²: the hazard disc (red; darker while the
        point is inside), the goal (green) and the point (blue)."""
        ys, xs = np.meshgrid(np.linspace(2, -2, height), np.linspace(-2, 2, width), indexing="ij")
        frame = np.full((height, width, 3), 235, dtype=np.uint8)
        pos = self._pos.numpy()
        inside = bool(np.linalg.norm(pos) < self.hazard_radius)
        pixel = 4.0 / min(width, height)  # discs at least ~2 pixels wide at any size
        for (cx, cy), radius, color in [((0.0, 0.0), self.hazard_radius, (160, 30, 30) if inside else (230, 120, 120)),
                                        (self.GOAL, max(0.1, 1.5 * pixel), (40, 170, 60)),
                                        (tuple(pos), max(0.08, 1.5 * pixel), (40, 70, 200))]:
            frame[(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = color
        return frame


class ToyFactory:
    """Factory for :class:`ToyHazardEnv` (``env=toy``); it has its own episode length and cost limit."""

    def __init__(self, name: str = "toy", max_episode_steps: int = 50, cost_limit: float = 2.0,
                 hazard_radius: float = 0.5, speed: float = 0.1, start_noise: float = 0.1):
        self.info = EnvInfo(name=name, episode_length=int(max_episode_steps), cost_limit=float(cost_limit),
                            cost_done_mask=False)
        self.kwargs = dict(max_episode_steps=max_episode_steps, hazard_radius=hazard_radius, speed=speed,
                           start_noise=start_noise)

    def __call__(self, seed: int) -> EnvBase:
        return ToyHazardEnv(seed=int(seed), **self.kwargs)

    def render_env(self, seed: int, width: int, height: int, camera: str | None = None) -> EnvBase:
        """The env of ``__call__(seed)``; :func:`render_frame` draws it at ``width`` × ``height`` (no camera)."""
        env = self(seed)
        env.render_size = (int(width), int(height))
        return env


def render_frame(env: EnvBase) -> np.ndarray:
    """The current RGB frame (uint8, [H, W, 3]) of an env built by a factory's ``render_env``."""
    base = _base(env)
    if isinstance(base, ToyHazardEnv):
        return base.render(*getattr(base, "render_size", (64, 64)))
    return base._env.render()
