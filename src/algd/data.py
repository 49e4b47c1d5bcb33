"""The DataModule: environment, TorchRL collector, replay buffer, frame counter, warm-up and update-to-data ratio.

Its train loader is a lazy generator: collect ``frames_per_batch`` frames → extend the buffer → yield
``utd × (learning frames)`` freshly sampled batches, until ``total_frames`` environment frames (warm-up included).
When no update is due (warm-up) it yields ``None`` once per collection so frame-keyed callbacks keep running.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

import lightning as L
import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import RandomSampler
from torchrl.envs import EnvBase

TRANSITION_KEYS = ["observation", "action", ("next", "observation"), ("next", "reward"), ("next", "cost"),
                   ("next", "terminated"), ("next", "done")]


class EpisodeTracker:
    """Running undiscounted return, cost and length of the current episode; recent finished episodes."""

    def __init__(self, window: int = 10):
        self.ret = self.cost = 0.0
        self.length = 0
        self.finished: deque[tuple[float, float, int]] = deque(maxlen=window)
        self.episodes = 0
        self.new: list[tuple[float, float, int, int]] = []

    def update(self, data: TensorDictBase, first_frame: int) -> None:
        """Accumulate a batch of consecutive frames; ``first_frame`` is the frame count before the batch."""
        rewards = data["next", "reward"].reshape(-1).tolist()
        costs = data["next", "cost"].reshape(-1).tolist()
        dones = data["next", "done"].reshape(-1).tolist()
        for i, (r, c, d) in enumerate(zip(rewards, costs, dones)):
            self.ret += r
            self.cost += c
            self.length += 1
            if d:
                episode = (self.ret, self.cost, self.length)
                self.finished.append(episode)
                self.new.append((*episode, first_frame + i + 1))
                self.episodes += 1
                self.ret = self.cost = 0.0
                self.length = 0

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
        return {"ret": self.ret, "cost": self.cost, "length": self.length, "episodes": self.episodes,
                "finished": list(self.finished)}

    def load_state_dict(self, state: dict) -> None:
        self.ret, self.cost, self.length = state["ret"], state["cost"], state["length"]
        self.episodes = state["episodes"]
        self.finished.clear()
        self.finished.extend(tuple(e) for e in state["finished"])


class RLDataModule(L.LightningDataModule):
    """Owns the training env, the collector, the replay buffer, the frame counter and the episode statistics."""

    def __init__(self, env_factory: Callable[[int], EnvBase], seed: int, total_frames: int, warmup_frames: int,
                 utd: float, batch_size: int, frames_per_batch: int = 10, buffer_capacity: int = 1_000_000):
        super().__init__()
        self.env_factory, self.seed = env_factory, int(seed)
        self.total_frames, self.warmup_frames = int(total_frames), int(warmup_frames)
        self.utd, self.batch_size, self.frames_per_batch = float(utd), int(batch_size), int(frames_per_batch)
        self.buffer_capacity = int(buffer_capacity)
        self.frames = 0
        self.updates = 0
        self.episodes = EpisodeTracker()
        self.collect_seconds = 0.0
        self.env: EnvBase | None = None
        self.collector: Collector | None = None
        self.buffer = TensorDictReplayBuffer(storage=LazyTensorStorage(self.buffer_capacity),
                                             sampler=RandomSampler(), batch_size=self.batch_size)
        self._policy = None

    # ------------------------------------------------------------------------------------------------ env specs
    def build_env(self) -> EnvBase:
        if self.env is None:
            self.env = self.env_factory(self.seed)
        return self.env

    def specs(self) -> dict:
        """Runtime sizes for the model, read from the env specs."""
        env = self.build_env()
        obs_spec = env.observation_spec["observation"]
        act_spec = env.action_spec
        return {"obs_dim": int(obs_spec.shape[-1]), "act_dim": int(act_spec.shape[-1]),
                "action_low": act_spec.space.low.float().clone(), "action_high": act_spec.space.high.float().clone()}

    def set_policy(self, policy) -> None:
        self._policy = policy

    # ---------------------------------------------------------------------------------------------- the loader
    def train_dataloader(self) -> Iterator[TensorDictBase]:
        return _Batches(self)

    def _collector(self) -> Collector:
        if self.collector is None:
            if self._policy is None:
                raise RuntimeError("RLDataModule.set_policy(...) must be called before training")
            self.collector = Collector(self.build_env(), self._policy, frames_per_batch=self.frames_per_batch,
                                       total_frames=-1, trust_policy=True,
                                       auto_register_policy_transforms=False)
        return self.collector

    def batches(self) -> Iterator[TensorDictBase]:
        collector = self._collector()
        iterator = iter(collector)
        while self.frames < self.total_frames:
            t0 = time.perf_counter()
            data = next(iterator)
            take = min(data.numel(), self.total_frames - self.frames)
            data = data.reshape(-1)[:take]
            self.buffer.extend(data.select(*TRANSITION_KEYS))
            self.episodes.update(data, self.frames)
            self.frames += take
            self.collect_seconds += time.perf_counter() - t0
            due = int(self.utd * max(0, self.frames - self.warmup_frames)) - self.updates
            if due <= 0 or len(self.buffer) < self.batch_size:
                yield None  # a collection tick: callbacks keyed on frames still run during warm-up
                continue
            for _ in range(due):
                self.updates += 1
                yield self.buffer.sample()

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
    def state_dict(self) -> dict:
        return {"frames": self.frames, "updates": self.updates, "episodes": self.episodes.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.frames, self.updates = int(state["frames"]), int(state["updates"])
        self.episodes.load_state_dict(state["episodes"])


class _Batches:
    """Re-iterable wrapper so Lightning can call ``iter`` on the loader."""

    def __init__(self, dm: RLDataModule):
        self.dm = dm

    def __iter__(self):
        return self.dm.batches()
