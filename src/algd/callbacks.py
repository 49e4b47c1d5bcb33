"""Callbacks keyed on environment frames (never on Lightning steps): logging, evaluation, checkpoints, progress."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type
from tqdm.auto import tqdm

from algd.envs import EnvInfo


def _writer(trainer: L.Trainer):
    return trainer.logger.experiment if trainer.logger is not None else None


def log_scalars(trainer: L.Trainer, scalars: dict[str, float], frames: int) -> None:
    writer = _writer(trainer)
    if writer is None:
        return
    for key, value in scalars.items():
        writer.add_scalar(key, value, frames)


class _EveryFrames(L.Callback):
    """Fires ``fire(trainer, module, frames)`` whenever the frame counter crosses a multiple of ``every_frames``."""

    def __init__(self, every_frames: int):
        self.every_frames = int(every_frames)
        self._next: int | None = None

    def on_train_start(self, trainer, pl_module):
        frames = trainer.datamodule.frames
        self._next = (frames // self.every_frames + 1) * self.every_frames if self.every_frames > 0 else None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        frames = trainer.datamodule.frames
        if self._next is not None and frames >= self._next:
            self._next = (frames // self.every_frames + 1) * self.every_frames
            self.fire(trainer, pl_module, frames)

    def fire(self, trainer, pl_module, frames: int) -> None:
        raise NotImplementedError


class FrameLogger(_EveryFrames):
    """Writes the learner's mean losses, λ diagnostics, finished training episodes and timings every N frames."""

    def __init__(self, every_frames: int = 1000):
        super().__init__(every_frames)
        self._t = self._frames = self._updates = None

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        dm = trainer.datamodule
        self._t, self._frames, self._updates, self._collect = time.perf_counter(), dm.frames, dm.updates, 0.0

    def fire(self, trainer, pl_module, frames):
        dm = trainer.datamodule
        scalars = dict(pl_module.pop_metrics())
        for ret, cost, length, end_frame in dm.episodes.pop_new():
            log_scalars(trainer, {"train/episode_return": ret, "train/episode_cost": cost,
                                  "train/episode_length": length}, end_frame)
        now = time.perf_counter()
        elapsed = max(now - self._t, 1e-9)
        collect = dm.collect_seconds - self._collect
        scalars.update({"time/fps": (frames - self._frames) / elapsed,
                        "time/updates_per_s": (dm.updates - self._updates) / max(elapsed - collect, 1e-9),
                        "time/collect_s": collect, "time/update_s": elapsed - collect})
        log_scalars(trainer, scalars, frames)
        self._t, self._frames, self._updates, self._collect = now, frames, dm.updates, dm.collect_seconds

    def on_train_end(self, trainer, pl_module):
        # What happened since the last logging point is not lost; no second point at an already logged frame.
        if trainer.datamodule.frames > self._frames:
            self.fire(trainer, pl_module, trainer.datamodule.frames)


def evaluate(policy, env, episodes: int, max_steps: int) -> dict[str, float]:
    """Deterministic episodes; undiscounted return and cost sums. Returns means and standard deviations."""
    returns, costs, lengths = [], [], []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            td = env.rollout(max_steps, policy, break_when_any_done=True)
            returns.append(td["next", "reward"].sum().item())
            costs.append(td["next", "cost"].sum().item())
            lengths.append(td.numel())
    r, c = torch.tensor(returns), torch.tensor(costs)
    return {"eval/return": r.mean().item(), "eval/cost": c.mean().item(),
            "eval/return_std": r.std(unbiased=False).item(), "eval/cost_std": c.std(unbiased=False).item(),
            "eval/length": sum(lengths) / len(lengths)}


class Evaluator(_EveryFrames):
    """Every ``every_frames`` (and at the end of training) run ``episodes`` deterministic episodes on a separate
    env (seeded ``seed + 10_000``) and log ``eval/return``, ``eval/cost``."""

    def __init__(self, env_factory, info: EnvInfo, seed: int, every_frames: int, episodes: int = 5):
        super().__init__(every_frames)
        self.env_factory, self.info, self.seed, self.episodes = env_factory, info, int(seed), int(episodes)
        self.env = None
        self.last: dict[str, float] = {}

    def fire(self, trainer, pl_module, frames):
        if self.episodes <= 0:
            return
        if self.env is None:
            self.env = self.env_factory(self.seed + 10_000)
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.last = evaluate(pl_module.actor.policy(), self.env, self.episodes, self.info.episode_length)
        finally:
            pl_module.train(was_training)
        log_scalars(trainer, self.last, frames)
        tqdm.write(f"[eval] frames {frames}: return {self.last['eval/return']:.2f} ± {self.last['eval/return_std']:.2f}"
                   f"  cost {self.last['eval/cost']:.2f} ± {self.last['eval/cost_std']:.2f}"
                   f"  (limit {self.info.cost_limit:g}, {self.episodes} episodes)")

    def on_train_end(self, trainer, pl_module):
        frames = trainer.datamodule.frames
        if not self.last or self._next is None or frames > self._next - self.every_frames:
            self.fire(trainer, pl_module, frames)
        if self.env is not None:
            self.env.close()
            self.env = None


def atomic_save_checkpoint(trainer: L.Trainer, path: Path) -> None:
    """Write to a temporary file in the same folder, then rename: a kill mid-save never corrupts ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    os.replace(tmp, path)


class Checkpointer(_EveryFrames):
    """``checkpoints/last.ckpt`` every ``every_frames`` and at the end, plus ``checkpoints/frame_<N>.ckpt``."""

    def __init__(self, dirpath: str, every_frames: int, keep_periodic: bool = True):
        super().__init__(every_frames)
        self.dirpath, self.keep_periodic = Path(dirpath), bool(keep_periodic)

    def fire(self, trainer, pl_module, frames):
        atomic_save_checkpoint(trainer, self.dirpath / "last.ckpt")
        if self.keep_periodic:
            atomic_save_checkpoint(trainer, self.dirpath / f"frame_{frames}.ckpt")

    def on_train_end(self, trainer, pl_module):
        atomic_save_checkpoint(trainer, self.dirpath / "last.ckpt")


class FrameProgressBar(L.Callback):
    """A progress bar over environment frames showing recent training episode return and cost and λ."""

    def __init__(self, refresh_s: float | None = None):
        self.refresh_s = refresh_s
        self.bar = None
        self._seen = 0

    def on_train_start(self, trainer, pl_module):
        dm = trainer.datamodule
        refresh = self.refresh_s if self.refresh_s is not None else (0.5 if sys.stderr.isatty() else 30.0)
        self.bar = tqdm(total=dm.total_frames, initial=dm.frames, unit="frame", dynamic_ncols=True,
                        mininterval=refresh, desc="train", smoothing=0.05)
        self._seen = dm.frames

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        dm = trainer.datamodule
        if dm.frames == self._seen:
            return
        self.bar.update(dm.frames - self._seen)
        self._seen = dm.frames
        recent = dm.episodes.recent()
        if recent is not None and (dm.frames % 100 < dm.frames_per_batch):
            lam = pl_module.multiplier.lam.item()
            self.bar.set_postfix(ret=f"{recent[0]:.2f}", cost=f"{recent[1]:.2f}", lam=f"{lam:.3f}", refresh=False)

    def on_train_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.update(trainer.datamodule.frames - self._seen)
            self.bar.close()

