"""The DataModule: environment, TorchRL collector, replay buffer, frame counter, warm-up and update-to-data ratio.

Its train loader is a lazy generator: collect ``frames_per_batch`` frames → extend the buffer → yield
``utd × (learning frames)`` freshly sampled batches, until ``total_frames`` environment frames (warm-up included).
When no update is due (warm-up) it yields ``None`` once per collection so frame-keyed callbacks keep running.
With ``updates_per_step`` = k > 1 (``trainer.updates_per_graph`` on a GPU) it yields, while k or more updates are
due, an :class:`~algd.data.replay.Updates` of k updates whose batches the learner draws on the device, and single
batches for the rest.
The update counter is the learner's (``SafeActorCritic.updates``): the loader reads it to know how many updates the
frames collected so far are still owed.

The collector acts with its own CPU copy of the actor (``algd.actors.acting_copy``), refreshed from the learner's
actor every ``sync_every_frames`` frames (default: before every collection). The learner may therefore live on a GPU
while the envs stay on CPU; the replay storage lives on the learner's device (``device``), so sampled batches need
no host-to-device copy.

Checkpoints (``state_dict``) hold the frame counter, the episode statistics, the RNG states (torch, numpy, Python,
and the env's own RNG as of its latest reset), the actions of the unfinished episode and, when asked
(``replay_in_checkpoint``), the replay buffer contents. Restored between two updates, a run continues exactly as the
uninterrupted one, mid-episode too: the rebuilt env replays the unfinished episode's actions from the same reset
(``AlgdEnv.resume_episode``) before the collector takes its first step. With several collector workers the env
states are not saved: each worker starts a new episode.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import lightning as L
import torch
from tensordict import TensorDictBase
from torchrl.collectors import Collector
from torchrl.envs import EnvBase

from algd import checks, schema
from algd.actors import acting_copy, load_weights_
from algd.data.collectors import env_specs, make_collector
from algd.data.replay import DeviceSampler, Updates
from algd.data.stream import Stream
from algd.rng import rng_states, set_rng_states


class RLDataModule(L.LightningDataModule):
    """Owns the training env, the collector, the replay buffer, the frame counter and the episode statistics."""

    def __init__(
        self,
        env_factory: Callable[[int], EnvBase],
        seed: int,
        total_frames: int,
        warmup_frames: int,
        utd: float,
        batch_size: int,
        frames_per_batch: int = 10,
        buffer_capacity: int = 1_000_000,
        workers: int = 1,
        collector: str = "single",
        sync_every_frames: int | None = None,
        device: str | torch.device = "cpu",
        updates_per_step: int = 1,
    ):
        super().__init__()
        checks.enforce(schema.DATA, "data", **{k: v for k, v in locals().items() if k in schema.DATA.rules})
        if collector == "single":
            workers = 1
        self.workers, self.overlap = int(workers), collector == "async"
        self.sync_every_frames = int(sync_every_frames or frames_per_batch)
        self.device = torch.device(device)
        self.env_factory, self.seed = env_factory, int(seed)
        self.total_frames, self.warmup_frames = int(total_frames), int(warmup_frames)
        self.utd, self.batch_size, self.frames_per_batch = float(utd), int(batch_size), int(frames_per_batch)
        self.buffer_capacity = int(buffer_capacity)
        self.updates_per_step = int(updates_per_step)  # > 1: hand the learner that many updates at a time
        self._sampler: DeviceSampler | None = None
        self.frames = 0
        self.collect_seconds = 0.0
        self.env: EnvBase | None = None
        self.collector: Collector | None = None
        self.streams = self._streams()
        self._actor: torch.nn.Module | None = None  # the learner's actor (any device)
        self._acting: torch.nn.Module | None = None  # the collector's CPU copy of it
        self._synced_at: int | None = None  # frame count at the latest refresh of the acting copy
        self.syncs = 0
        self._replay_in_checkpoint = False

    def _streams(self) -> list[Stream]:
        # a resume replays the unfinished episode of one env exactly; collector workers each start a new one
        return [Stream(self.buffer_capacity, self.batch_size, self.device, exact=self.workers == 1)]

    @property
    def buffer(self):
        """The replay buffer."""
        return self.streams[0].buffer

    @property
    def collected_cost(self) -> float:
        """Sum of ``("next", "cost")`` over every frame counted."""
        return self.streams[0].collected_cost

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

    @property
    def acting_actor(self) -> torch.nn.Module | None:
        """The collector's CPU copy of the learner's actor."""
        return self._acting

    @property
    def replay_size(self) -> int:
        """Transitions in the replay buffer (of each member, for a population)."""
        return min(len(stream) for stream in self.streams)

    def pop_finished_episodes(self, member: int = 0) -> list[tuple[float, float, int, int]]:
        """Training episodes finished since the last call (of a population's ``member``): (return, cost, length,
        frame at which it ended)."""
        return self.streams[member].episodes.pop_new()

    def recent_episodes(self, member: int | None = None) -> tuple[float, float] | None:
        """Mean return and cost of the last few finished training episodes (None before the first); of a
        population's ``member``, or averaged over its members."""
        recent = [s.episodes.recent() for s in (self.streams if member is None else [self.streams[member]])]
        recent = [r for r in recent if r is not None]
        if not recent:
            return None
        return sum(r[0] for r in recent) / len(recent), sum(r[1] for r in recent) / len(recent)

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
            for stream, env in zip(self.streams, self._stream_envs()):
                stream.resume(env)  # the collector's first reset replays the interrupted episode
            # The Collector runs the policy once while it is built (to learn its outputs); a forked RNG keeps that
            # draw out of the training stream, so a collector built by a resumed run changes no random number.
            with torch.random.fork_rng(devices=[]):
                frames = self.frames_per_batch * len(self.streams)
                self.collector = make_collector(self._collected(), self._acting.policy(), frames, self.overlap)
            for env in self._stream_envs():
                Stream.warn_replay(env)
        return self.collector

    def _stream_envs(self) -> list[EnvBase]:
        """The env each stream follows (the collector workers' envs are not this process's)."""
        return [self.build_env()]

    def _collected(self):
        """What the collector steps: the env, or one constructor per worker process."""
        if self.workers == 1:
            return self.build_env()
        return [partial(self.env_factory, self.seed + i) for i in range(self.workers)]

    def due_updates(self, updates: int) -> int:
        """Updates owed to the frames collected so far, ``updates`` being done (0 until the buffer holds a batch)."""
        if self.replay_size < self.batch_size:
            return 0
        return int(self.utd * max(0, self.frames - self.warmup_frames)) - updates

    def batches(self, updates_done: Callable[[], int] | None = None) -> Iterator[TensorDictBase | None]:
        """Owed updates first (a resumed run may stop between two updates), then collect → updates, until the
        frame budget is spent and every owed update is done. ``updates_done()`` is the learner's update counter,
        read after every batch; without it every batch served counts as one update done."""
        iterator, served = None, 0
        done = updates_done or (lambda: served)
        while True:
            while (due := self.due_updates(done())) > 0:
                if self.updates_per_step > 1 and due >= self.updates_per_step:
                    served += self.updates_per_step
                    yield self.updates()
                else:
                    served += 1
                    yield self.sample()
            if self.frames >= self.total_frames:
                return
            t0 = time.perf_counter()
            self._refresh_policy()
            if iterator is None:
                iterator = iter(self._collector())
            self._store(next(iterator))
            self.collect_seconds += time.perf_counter() - t0
            if self.due_updates(done()) <= 0:
                yield None  # a collection tick: callbacks keyed on frames still run during warm-up

    def _store(self, data: TensorDictBase) -> None:
        """A collected batch → replay buffer, episode statistics, frame counter (up to ``total_frames``)."""
        take = min(data.numel(), self.total_frames - self.frames)
        if data.ndim == 2:  # [workers, T] → frames in collection order (time-major)
            data = data.transpose(0, 1)
        self.streams[0].store(data.reshape(-1)[:take], self.frames)
        self.frames += take

    def sample(self) -> TensorDictBase:
        """One replay batch of ``batch_size`` transitions."""
        return self.buffer.sample()

    def updates(self) -> Updates:
        """``updates_per_step`` updates whose batches the learner draws on the storage's device (every stream's
        buffer: [B], or [S, B] for a population), the buffers' current sizes copied there first."""
        if self._sampler is None:
            self._sampler = DeviceSampler([stream.buffer for stream in self.streams], self.batch_size)
        self._sampler.refresh()
        return Updates(self.updates_per_step, self._sampler)

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
        return {"frames": self.frames, "rng": rng_states(), **self._streams_state()}

    def load_state_dict(self, state: dict) -> None:
        """Frame counter, episode statistics and replay buffer; the RNG states are applied by :meth:`restore_rng`
        once everything else is built (building draws random numbers)."""
        self.frames = int(state["frames"])
        self._load_streams(state)
        self._rng_state = state["rng"]

    def _streams_state(self) -> dict:
        """The streams' part of the checkpoint (one stream: its keys at the top level, as always)."""
        return self.streams[0].state_dict(self.env if self.workers == 1 else None, self._replay_in_checkpoint)

    def _load_streams(self, state: dict) -> None:
        self.streams[0].load_state_dict(state)

    def restore_rng(self) -> None:
        set_rng_states(self._rng_state)


class _Batches:
    """Re-iterable wrapper so Lightning can call ``iter`` on the loader."""

    def __init__(self, dm: RLDataModule):
        self.dm = dm

    def __iter__(self):
        learner = self.dm.trainer.lightning_module
        return self.dm.batches(lambda: learner.updates)
