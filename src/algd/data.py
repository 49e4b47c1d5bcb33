"""The DataModule: environment, TorchRL collector, replay buffer, frame counter, warm-up and update-to-data ratio.

Its train loader is a lazy generator: collect ``frames_per_batch`` frames → extend the buffer → yield
``utd × (learning frames)`` freshly sampled batches, until ``total_frames`` environment frames (warm-up included).
When no update is due (warm-up) it yields ``None`` once per collection so frame-keyed callbacks keep running.

The collector acts with its own CPU copy of the actor (``algd.actors.acting_copy``), refreshed from the learner's
actor every ``sync_every_frames`` frames (default: before every collection). The learner may therefore live on a GPU
while the envs stay on CPU; the replay storage lives on the learner's device (``device``), so sampled batches need
no host-to-device copy.

Checkpoints (``state_dict``) hold the counters, the episode statistics, the RNG states (torch, numpy, Python, and
the env's own RNG as of its latest reset) and, when asked (``replay_in_checkpoint``), the replay buffer contents.
Restored between two updates, a run continues exactly as the uninterrupted one; an episode interrupted mid-way is
replayed from its start (its frames already collected stay counted and in the buffer).
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import numpy as np

import lightning as L
import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import RandomSampler
from torchrl.envs import EnvBase

from algd.actors import acting_copy, load_weights_
from algd.envs import episode_rng_state, mt19937_from_dict, mt19937_to_dict, restore_episode_rng

TRANSITION_KEYS = ["observation", "action", ("next", "observation"), ("next", "reward"), ("next", "cost"),
                   ("next", "terminated"), ("next", "done")]


class EpisodeTracker:
    """Running undiscounted return, cost and length of the current episode of each env; recent finished episodes."""

    def __init__(self, window: int = 10):
        self.running: dict[int, list] = {}  # trajectory id → [return, cost, length] of an unfinished episode
        self.finished: deque[tuple[float, float, int]] = deque(maxlen=window)
        self.episodes = 0
        self.new: list[tuple[float, float, int, int]] = []

    def update(self, data: TensorDictBase, first_frame: int) -> None:
        """Accumulate a batch of frames in counting order; ``first_frame`` is the frame count before the batch. Frames
        are grouped into episodes by TorchRL's trajectory ids (unique across collector workers), so frames of several
        envs may interleave."""
        rewards = data["next", "reward"].reshape(-1).tolist()
        costs = data["next", "cost"].reshape(-1).tolist()
        dones = data["next", "done"].reshape(-1).tolist()
        ids = data.get(("collector", "traj_ids"), None)
        ids = ids.reshape(-1).tolist() if ids is not None else [0] * len(rewards)
        for i, (r, c, d, e) in enumerate(zip(rewards, costs, dones, ids)):
            run = self.running.setdefault(e, [0.0, 0.0, 0])
            run[0] += r
            run[1] += c
            run[2] += 1
            if d:
                episode = (run[0], run[1], run[2])
                self.finished.append(episode)
                self.new.append((*episode, first_frame + i + 1))
                self.episodes += 1
                del self.running[e]

    def pop_new(self) -> list[tuple[float, float, int, int]]:
        """Episodes finished since the last call: (return, cost, length, frame at which it ended)."""
        new, self.new = self.new, []
        return new

    def recent(self) -> tuple[float, float] | None:
        if not self.finished:
            return None
        n = len(self.finished)
        return sum(e[0] for e in self.finished) / n, sum(e[1] for e in self.finished) / n

    def state_dict(self) -> dict:
        return {"episodes": self.episodes, "finished": list(self.finished), "new": list(self.new)}

    def load_state_dict(self, state: dict) -> None:
        """A resumed env restarts its interrupted episode, so the running sums start again at 0."""
        self.running = {}
        self.episodes = state["episodes"]
        self.finished.clear()
        self.finished.extend(tuple(e) for e in state["finished"])
        self.new = [tuple(e) for e in state.get("new", [])]


def rng_states() -> dict:
    """Global RNG states (torch CPU and CUDA, numpy, Python) in a form ``torch.load(weights_only=True)`` accepts."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": mt19937_to_dict(np.random.get_state())}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_states(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    np.random.set_state(mt19937_from_dict(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


COLLECTORS = ("single", "multi", "async")


def make_collector(envs, policy, frames_per_batch: int, overlap: bool = False):
    """The training collector: a TorchRL ``Collector`` over one env, or, given a list of env constructors, one env
    process per constructor: ``MultiSyncCollector`` (the processes step together, each batch is [workers, T] with
    ``frames_per_batch`` frames in all) or, with ``overlap``, ``MultiAsyncCollector`` (each process collects its
    next ``frames_per_batch`` frames while the learner trains; a batch comes from whichever process is ready). The
    workers read the (CPU) policy parameters from shared memory: an in-place update of them reaches every worker."""
    common = dict(frames_per_batch=frames_per_batch, total_frames=-1, trust_policy=True,
                  auto_register_policy_transforms=False)
    if isinstance(envs, EnvBase):
        return Collector(envs, policy, **common)
    from torchrl.collectors import MultiAsyncCollector, MultiSyncCollector

    multi = dict(num_threads=torch.get_num_threads(), num_sub_threads=1, **common)
    if overlap:
        return MultiAsyncCollector(list(envs), policy, **multi)
    return MultiSyncCollector(list(envs), policy, cat_results="stack", **multi)


def env_specs(env: EnvBase) -> dict:
    """Runtime sizes for the networks (``obs_dim``, ``act_dim``, action bounds), read from the env specs."""
    obs_spec = env.observation_spec["observation"]
    act_spec = env.action_spec
    return {"obs_dim": int(obs_spec.shape[-1]), "act_dim": int(act_spec.shape[-1]),
            "action_low": act_spec.space.low.float().clone(), "action_high": act_spec.space.high.float().clone()}


class RLDataModule(L.LightningDataModule):
    """Owns the training env, the collector, the replay buffer, the frame counter and the episode statistics."""

    def __init__(self, env_factory: Callable[[int], EnvBase], seed: int, total_frames: int, warmup_frames: int,
                 utd: float, batch_size: int, frames_per_batch: int = 10, buffer_capacity: int = 1_000_000,
                 workers: int = 1, collector: str = "single", sync_every_frames: int | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__()
        if collector not in COLLECTORS:
            raise ValueError(f"unknown collector {collector!r}; valid: {', '.join(COLLECTORS)}")
        if collector == "single":
            workers = 1
        if workers < 1 or (collector == "multi" and frames_per_batch % workers):
            raise ValueError(f"collector.frames_per_batch ({frames_per_batch}) must be a multiple of "
                             f"collector.workers ({workers})")
        self.workers, self.overlap = int(workers), collector == "async"
        self.sync_every_frames = int(sync_every_frames or frames_per_batch)
        self.device = torch.device(device)
        self.env_factory, self.seed = env_factory, int(seed)
        self.total_frames, self.warmup_frames = int(total_frames), int(warmup_frames)
        self.utd, self.batch_size, self.frames_per_batch = float(utd), int(batch_size), int(frames_per_batch)
        self.buffer_capacity = int(buffer_capacity)
        self.frames = 0
        self.updates = 0
        self.episodes = EpisodeTracker()
        self.collect_seconds = 0.0
        self.collected_cost = 0.0  # sum of ("next", "cost") over every frame counted
        self.env: EnvBase | None = None
        self.collector: Collector | None = None
        self.buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(self.buffer_capacity, device=self.device),
                                             sampler=RandomSampler(), batch_size=self.batch_size)
        self._actor: torch.nn.Module | None = None  # the learner's actor (any device)
        self._acting: torch.nn.Module | None = None  # the collector's CPU copy of it
        self._synced_at: int | None = None  # frame count at the latest refresh of the acting copy
        self.syncs = 0
        self._replay_in_checkpoint = False
        self._env_rng: dict | None = None  # restored env RNG, applied before the first reset of a resumed run

    # ------------------------------------------------------------------------------------------------ env specs
    def build_env(self) -> EnvBase:
        if self.env is None:
            self.env = self.env_factory(self.seed)
        return self.env

    def specs(self) -> dict:
        """Runtime sizes for the model, read from the env specs."""
        return env_specs(self.build_env())

    def set_policy(self, actor: torch.nn.Module) -> None:
        """The learner's actor; the collector acts with a CPU copy of it, refreshed every ``sync_every_frames``."""
        self._actor, self._acting = actor, acting_copy(actor)
        self._synced_at = None

    def _refresh_policy(self) -> None:
        """Copy the learner's actor weights into the acting copy when ``sync_every_frames`` frames have passed since
        the last refresh. A frame is collected with weights at most ``sync_every_frames + frames_per_batch`` frames
        old (``collector=async``: plus the batches the other workers have in flight)."""
        if self._synced_at is None or self.frames - self._synced_at >= self.sync_every_frames:
            load_weights_(self._acting, self._actor)
            self._synced_at = self.frames
            self.syncs += 1

    # ---------------------------------------------------------------------------------------------- the loader
    def train_dataloader(self) -> Iterator[TensorDictBase]:
        return _Batches(self)

    def _collector(self) -> Collector:
        if self.collector is None:
            if self._acting is None:
                raise RuntimeError("RLDataModule.set_policy(actor) must be called before training")
            env = self.build_env()
            restore_episode_rng(env, self._env_rng)  # the collector's first reset replays the interrupted episode
            self._env_rng = None
            # The Collector runs the policy once while it is built (to learn its outputs); a forked RNG keeps that
            # draw out of the training stream, so a collector built by a resumed run changes no random number.
            with torch.random.fork_rng(devices=[]):
                envs = env if self.workers == 1 else [partial(self.env_factory, self.seed + i)
                                                      for i in range(self.workers)]
                self.collector = make_collector(envs, self._acting.policy(), self.frames_per_batch, self.overlap)
        return self.collector

    def due_updates(self) -> int:
        """Updates owed to the frames collected so far (0 until the buffer holds a full batch)."""
        if len(self.buffer) < self.batch_size:
            return 0
        return int(self.utd * max(0, self.frames - self.warmup_frames)) - self.updates

    def batches(self) -> Iterator[TensorDictBase | None]:
        """Owed updates first (a resumed run may stop between two updates), then collect → updates, until the
        frame budget is spent and every owed update is done."""
        iterator = None
        while True:
            while self.due_updates() > 0:
                self.updates += 1
                yield self.buffer.sample()
            if self.frames >= self.total_frames:
                return
            t0 = time.perf_counter()
            self._refresh_policy()
            if iterator is None:
                iterator = iter(self._collector())
            data = next(iterator)
            take = min(data.numel(), self.total_frames - self.frames)
            if data.ndim == 2:  # [workers, T] → frames in collection order (time-major)
                data = data.transpose(0, 1)
            data = data.reshape(-1)[:take]
            self.buffer.extend(data.select(*TRANSITION_KEYS))
            self.episodes.update(data, self.frames)
            self.collected_cost += float(data["next", "cost"].sum())
            self.frames += take
            self.collect_seconds += time.perf_counter() - t0
            if self.due_updates() <= 0:
                yield None  # a collection tick: callbacks keyed on frames still run during warm-up

    def teardown(self, stage: str) -> None:
        self.close()

    def close(self) -> None:
        if self.collector is not None:
            self.collector.shutdown()
            self.collector = None
        if self.env is not None and not self.env.is_closed:
            self.env.close()
        self.env = None

    # ------------------------------------------------------------------------------------------- checkpointing
    @contextmanager
    def replay_in_checkpoint(self):
        """Within this context, ``state_dict`` also holds the replay buffer contents (for ``last.ckpt``)."""
        self._replay_in_checkpoint = True
        try:
            yield
        finally:
            self._replay_in_checkpoint = False

    def state_dict(self) -> dict:
        env_rng = episode_rng_state(self.env) if self.env is not None and self.workers == 1 else None
        state = {"frames": self.frames, "updates": self.updates, "episodes": self.episodes.state_dict(),
                 "collected_cost": self.collected_cost, "rng": rng_states(), "env_rng": env_rng}
        if self._replay_in_checkpoint:
            storage = self.buffer.storage
            n = len(storage)
            # Only the filled rows (the lazy storage allocates its whole capacity), in storage order, and the
            # writer's cursor: reloading reproduces the buffer and its future overwrites exactly.
            data = storage._storage[:n].to("cpu").to_dict() if n else {}
            state["replay"] = {"size": n, "data": data, "writer": self.buffer._writer.state_dict()}
        return state

    def load_state_dict(self, state: dict) -> None:
        """Counters, episode statistics and replay buffer; the RNG states are applied by :meth:`restore_rng`
        once everything else is built (building draws random numbers)."""
        self.frames, self.updates = int(state["frames"]), int(state["updates"])
        self.collected_cost = float(state.get("collected_cost", 0.0))
        self.episodes.load_state_dict(state["episodes"])
        replay = state.get("replay")
        if replay is None:
            raise ValueError("this checkpoint holds no replay buffer (periodic frame_N.ckpt files are weights-only "
                             "snapshots); resume from checkpoints/last.ckpt")
        self.buffer.empty()
        if replay["size"]:
            self.buffer.extend(TensorDict(replay["data"], batch_size=[replay["size"]]))
            self.buffer._writer.load_state_dict(replay["writer"])
        self._rng_state, self._env_rng = state["rng"], state["env_rng"]

    def restore_rng(self) -> None:
        set_rng_states(self._rng_state)


class _Batches:
    """Re-iterable wrapper so Lightning can call ``iter`` on the loader."""

    def __init__(self, dm: RLDataModule):
        self.dm = dm

    def __iter__(self):
        return self.dm.batches()
