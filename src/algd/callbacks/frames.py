"""Frame-keyed callbacks (never Lightning steps): the base class, metric logging and the progress bar.

Callbacks talk to the DataModule and the learner through their public interface only: ``frames``,
``total_frames``, ``frames_per_batch``, ``collect_seconds``, ``pop_finished_episodes()``, ``recent_episodes()``
(DataModule); ``updates``, ``pop_metrics()``, ``lagrange_multiplier()``, ``actor`` (learner).
"""

from __future__ import annotations

import sys
import time

import lightning as L
from tqdm.auto import tqdm


def tb_writer(trainer: L.Trainer):
    """The TensorBoard ``SummaryWriter`` of the run (None without a logger)."""
    return trainer.logger.experiment if trainer.logger is not None else None


def log_scalars(trainer: L.Trainer, scalars: dict[str, float], frames: int) -> None:
    writer = tb_writer(trainer)
    if writer is None:
        return
    for key, value in scalars.items():
        writer.add_scalar(key, value, frames)


def log_finished_episodes(trainer: L.Trainer) -> None:
    """Each training episode finished since the last call, at the frame at which it ended."""
    for ret, cost, length, end_frame in trainer.datamodule.pop_finished_episodes():
        log_scalars(
            trainer,
            {"train/episode_return": ret, "train/episode_cost": cost, "train/episode_length": length},
            end_frame,
        )


class EveryFrames(L.Callback):
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


class FrameLogger(EveryFrames):
    """Writes the learner's mean losses, λ diagnostics, finished training episodes and timings every N frames."""

    per_member = True  # a population runs one per member (algd.callbacks.population)

    def __init__(self, every_frames: int = 1000):
        super().__init__(every_frames)
        self._t = self._frames = self._updates = None

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        dm = trainer.datamodule
        self._t, self._frames, self._updates, self._collect = time.perf_counter(), dm.frames, pl_module.updates, 0.0

    def fire(self, trainer, pl_module, frames):
        dm = trainer.datamodule
        scalars = dict(pl_module.pop_metrics())
        log_finished_episodes(trainer)
        now = time.perf_counter()
        elapsed = max(now - self._t, 1e-9)
        collect = dm.collect_seconds - self._collect
        scalars.update(
            {
                "time/fps": (frames - self._frames) / elapsed,
                "time/updates_per_s": (pl_module.updates - self._updates) / max(elapsed - collect, 1e-9),
                "time/collect_s": collect,
                "time/update_s": elapsed - collect,
            }
        )
        log_scalars(trainer, scalars, frames)
        self._t, self._frames, self._updates, self._collect = now, frames, pl_module.updates, dm.collect_seconds

    def on_train_end(self, trainer, pl_module):
        # What happened since the last logging point is not lost; no second point at an already logged frame.
        if trainer.datamodule.frames > self._frames:
            self.fire(trainer, pl_module, trainer.datamodule.frames)


class FrameProgressBar(L.Callback):
    """A progress bar over environment frames showing recent training episode return and cost and λ."""

    def __init__(self, refresh_s: float | None = None):
        self.refresh_s = refresh_s
        self.bar = None
        self._seen = 0

    def on_train_start(self, trainer, pl_module):
        dm = trainer.datamodule
        refresh = self.refresh_s if self.refresh_s is not None else (0.5 if sys.stderr.isatty() else 30.0)
        self.bar = tqdm(
            total=dm.total_frames,
            initial=dm.frames,
            unit="frame",
            dynamic_ncols=True,
            mininterval=refresh,
            desc="train",
            smoothing=0.05,
        )
        self._seen = dm.frames

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        dm = trainer.datamodule
        if dm.frames == self._seen:
            return
        self.bar.update(dm.frames - self._seen)
        self._seen = dm.frames
        recent = dm.recent_episodes()
        if recent is not None and (dm.frames % 100 < dm.frames_per_batch):
            lam = pl_module.lagrange_multiplier()
            self.bar.set_postfix(ret=f"{recent[0]:.2f}", cost=f"{recent[1]:.2f}", lam=f"{lam:.3f}", refresh=False)

    def on_train_end(self, trainer, pl_module):
        if self.bar is not None:
            self.bar.update(trainer.datamodule.frames - self._seen)
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer, pl_module, exception):
        if self.bar is not None:  # an error message then starts on its own line
            self.bar.close()
            self.bar = None
