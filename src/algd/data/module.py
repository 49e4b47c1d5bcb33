"""The DataModule: environment, TorchRL collector, replay buffer, frame counter, warm-up and update-to-data ratio.

Its train loader is a lazy generator: collect ``frames_per_batch`` frames → extend the buffer → yield
``utd × (learning frames)`` freshly sampled batches, until ``total_frames`` environment frames (warm-up included).
When no update is due (warm-up) it yields ``None`` once per collection so frame-keyed callbacks keep running.
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
from tqdm.auto import tqdm

from algd import checks, schema
from algd.actors import acting_copy, load_weights_
from algd.data.collectors import env_specs, make_collector
from algd.data.episodes import EpisodeTracker
from algd.data.replay import TRANSITION_KEYS, buffer_state, load_buffer_state, make_buffer, transitions
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
        self.frames = 0
        self.episodes = EpisodeTracker()
        self.collect_seconds = 0.0
        self.collected_cost = 0.0  # sum of ("next", "cost") over every frame counted
        self.env: EnvBase | None = None
        self.collector: Collector | None = None
        self.buffer = make_buffer(self.buffer_capacity, self.batch_size, self.device)
        self._actor: torch.nn.Module | None = None  # the learner's actor (any device)
        self._acting: torch.nn.Module | None = None  # the collector's CPU copy of it
        self._synced_at: int | None = None  # frame count at the latest refresh of the acting copy
        self.syncs = 0
        self._replay_in_checkpoint = False
        self._episode: list[torch.Tensor] = []  # actions of the unfinished training episode (one worker)
        self._last_obs: torch.Tensor | None = None  # the latest observation the collector saw
        self._resume_env: tuple | None = None  # (env RNG, actions, observation) replayed by a resumed run's env
        self._replay_keys: list | None = None  # the restored buffer's keys

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
        return len(self.buffer)

    def pop_finished_episodes(self) -> list[tuple[float, float, int, int]]:
        """Training episodes finished since the last call: (return, cost, length, frame at which it ended)."""
        return self.episodes.pop_new()

    def recent_episodes(self) -> tuple[float, float] | None:
        """Mean return and cost of the last few finished training episodes (None before the first)."""
        return self.episodes.recent()

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
            if self._resume_env is not None:  # the collector's first reset replays the interrupted episode
                env.resume_episode(*self._resume_env)
                self._resume_env = None
            # The Collector runs the policy once while it is built (to learn its outputs); a forked RNG keeps that
            # draw out of the training stream, so a collector built by a resumed run changes no random number.
            with torch.random.fork_rng(devices=[]):
                envs = (
                    env
                    if self.workers == 1
                    else [partial(self.env_factory, self.seed + i) for i in range(self.workers)]
                )
                self.collector = make_collector(envs, self._acting.policy(), self.frames_per_batch, self.overlap)
            if env.replay_error:
                tqdm.write(
                    f"[algd] warning: the env did not replay the interrupted episode exactly (max |Δ observation| "
                    f"{env.replay_error:.3g}); the run continues from the replayed state"
                )
        return self.collector

    def due_updates(self, updates: int) -> int:
        """Updates owed to the frames collected so far, ``updates`` being done (0 until the buffer holds a batch)."""
        if len(self.buffer) < self.batch_size:
            return 0
        return int(self.utd * max(0, self.frames - self.warmup_frames)) - updates

    def batches(self, updates_done: Callable[[], int] | None = None) -> Iterator[TensorDictBase | None]:
        """Owed updates first (a resumed run may stop between two updates), then collect → updates, until the
        frame budget is spent and every owed update is done. ``updates_done()`` is the learner's update counter,
        read after every batch; without it every batch served counts as one update done."""
        iterator, served = None, 0
        done = updates_done or (lambda: served)
        while True:
            while self.due_updates(done()) > 0:
                served += 1
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
            rows = transitions(data)
            if self._replay_keys is not None:  # a buffer restored from an older checkpoint keeps its own keys
                rows = rows.select(*self._replay_keys)
            self.buffer.extend(rows)
            self._track_episode(data)
            self.episodes.update(data, self.frames)
            self.collected_cost += float(data["next", "cost"].sum())
            self.frames += take
            self.collect_seconds += time.perf_counter() - t0
            if self.due_updates(done()) <= 0:
                yield None  # a collection tick: callbacks keyed on frames still run during warm-up

    def _track_episode(self, data: TensorDictBase) -> None:
        """Keep the actions taken since the env's latest reset (what a resumed env replays) and the latest
        observation (what the replay is checked against)."""
        if self.workers != 1:
            return
        ends = data["next", "done"].reshape(-1).nonzero()
        if len(ends):
            self._episode = []
            data = data[int(ends[-1]) + 1 :]
        if data.shape[0]:  # (a TensorDict's numel() is 1 for an empty batch)
            self._episode.append(data["action"].clone())
            self._last_obs = data["next", "observation"][-1].clone()

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
        env_rng = self.env.episode_rng_state() if self.env is not None and self.workers == 1 else None
        state = {
            "frames": self.frames,
            "episodes": self.episodes.state_dict(),
            "collected_cost": self.collected_cost,
            "rng": rng_states(),
            "env_rng": env_rng,
            "episode_actions": torch.cat(self._episode) if self._episode else None,
            "last_observation": self._last_obs,
        }
        if self._replay_in_checkpoint:
            state["replay"] = buffer_state(self.buffer)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Frame counter, episode statistics and replay buffer; the RNG states are applied by :meth:`restore_rng`
        once everything else is built (building draws random numbers)."""
        self.frames = int(state["frames"])
        self.collected_cost = float(state.get("collected_cost", 0.0))
        self.episodes.load_state_dict(state["episodes"])
        replay = state.get("replay")
        if replay is None:
            raise ValueError(
                "this checkpoint holds no replay buffer (periodic frame_N.ckpt files are weights-only "
                "snapshots); resume from checkpoints/last.ckpt"
            )
        load_buffer_state(self.buffer, replay)
        saved = set(self.buffer.storage[:1].keys(True, True)) if len(self.buffer) else None
        self._replay_keys = None if saved is None else [k for k in TRANSITION_KEYS if k in saved]
        self._rng_state = state["rng"]
        actions, obs = state.get("episode_actions"), state.get("last_observation")
        if self.workers != 1:
            self._resume_env = None
        else:
            self._resume_env = (state["env_rng"], actions, obs)
            self._episode = [actions] if actions is not None and state["env_rng"] else []
            self._last_obs = obs
        self.episodes.load_state_dict(state["episodes"], resume_running=bool(self._episode))

    def restore_rng(self) -> None:
        set_rng_states(self._rng_state)


class _Batches:
    """Re-iterable wrapper so Lightning can call ``iter`` on the loader."""

    def __init__(self, dm: RLDataModule):
        self.dm = dm

    def __iter__(self):
        learner = self.dm.trainer.lightning_module
        return self.dm.batches(lambda: learner.updates)
