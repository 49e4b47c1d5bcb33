"""Checkpoints: find, load, restore and save (atomically) the complete resumable state; the ``Checkpointer`` and
``Resume`` callbacks."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import torch
from tqdm.auto import tqdm

from algd.callbacks.frames import EveryFrames, log_finished_episodes, tb_writer
from algd.errors import CheckpointError
from algd.learner.module import NonFiniteLossError


def checkpoint_frames(ckpt: dict) -> int:
    """The environment frame a loaded checkpoint was taken at."""
    return int(ckpt["RLDataModule"]["frames"])


def atomic_save_checkpoint(trainer: L.Trainer, path: Path, with_replay: bool = False) -> None:
    """Write to a temporary file in the same folder, then rename: a kill mid-save never corrupts ``path``.
    ``with_replay`` adds the replay buffer contents (what a resume needs besides the weights)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        if with_replay:
            with trainer.datamodule.replay_in_checkpoint():
                trainer.save_checkpoint(tmp, weights_only=False)
        else:
            trainer.save_checkpoint(tmp, weights_only=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    """``torch.load(weights_only=True)`` with one clear error for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (pickle, zip and unpickler errors all mean "unreadable")
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]} "
            f"(file truncated or corrupt? periodic copies are in {path.parent})"
        ) from None
    missing = [k for k in ("state_dict", "optimizer_states", "RLDataModule") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not an algd training checkpoint (missing {', '.join(missing)})")
    return ckpt


def load_weights(pl_module, ckpt: dict, path: Path) -> None:
    """The learner's networks, targets and multiplier from a loaded checkpoint (one clear error on a mismatch)."""
    try:
        pl_module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(
            f"checkpoint {path} does not match the model built from this config (different "
            f"actor, sizes or ensemble?): {first}"
        ) from None


def restore_checkpoint(ckpt: dict, trainer: L.Trainer, pl_module, path: Path) -> None:
    """Load everything a run needs to continue: networks and targets, optimiser states (hyper-parameters such as
    the learning rate come from the current config), multiplier, counters, episode statistics, replay buffer."""
    load_weights(pl_module, ckpt, path)
    pl_module.on_load_checkpoint(ckpt)
    optimizers = trainer.optimizers
    if len(optimizers) != len(ckpt["optimizer_states"]):
        raise CheckpointError(
            f"checkpoint {path} has {len(ckpt['optimizer_states'])} optimiser states, the "
            f"config builds {len(optimizers)}"
        )
    for opt, state in zip(optimizers, ckpt["optimizer_states"]):
        hyper = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
        opt.load_state_dict(state)
        for group, h in zip(opt.param_groups, hyper):
            group.update(h)
    trainer.datamodule.load_state_dict(ckpt["RLDataModule"])


class Resume(L.Callback):
    """Restores a checkpoint when training starts (before the frame-keyed callbacks read the frame counter) and
    sets the RNG states last, so the first random draw after it is the one the interrupted run would have made."""

    def __init__(self, ckpt: dict, path: Path):
        self.ckpt, self.path = ckpt, Path(path)

    def on_train_start(self, trainer, pl_module):
        restore_checkpoint(self.ckpt, trainer, pl_module, self.path)
        dm = trainer.datamodule
        tqdm.write(
            f"[algd] resumed from {self.path} at frame {dm.frames}: {pl_module.updates} updates, replay "
            f"buffer {dm.replay_size} transitions, lambda {pl_module.lagrange_multiplier():.6g}"
        )
        self.ckpt = None
        dm.restore_rng()


def params_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class Checkpointer(EveryFrames):
    """``checkpoints/last.ckpt`` (with the replay buffer: what ``resume=`` needs) every ``every_frames``, at the
    end, and when a loss turns non-finite (if the parameters are still finite); plus weights-only
    ``checkpoints/frame_<N>.ckpt`` snapshots."""

    def __init__(self, dirpath: str, every_frames: int, keep_periodic: bool = True):
        super().__init__(every_frames)
        self.dirpath, self.keep_periodic = Path(dirpath), bool(keep_periodic)
        self.saved_on_exception: bool | None = None

    def save_last(self, trainer) -> None:
        # Everything logged up to this frame reaches the disk first: a resumed run purges TensorBoard points
        # after the checkpoint's frame and re-logs from there, so the curves continue without gaps or duplicates.
        log_finished_episodes(trainer)
        writer = tb_writer(trainer)
        if writer is not None:
            writer.flush()
        atomic_save_checkpoint(trainer, self.dirpath / "last.ckpt", with_replay=True)

    def fire(self, trainer, pl_module, frames):
        self.save_last(trainer)
        if self.keep_periodic:
            atomic_save_checkpoint(trainer, self.dirpath / f"frame_{frames}.ckpt")

    def on_train_end(self, trainer, pl_module):
        self.save_last(trainer)

    def on_exception(self, trainer, pl_module, exception):
        self.saved_on_exception = False
        if isinstance(exception, NonFiniteLossError) and params_finite(pl_module):
            self.save_last(trainer)  # the failed update did not complete: the learner's counter excludes it
            self.saved_on_exception = True


class SignalStop(L.Callback):
    """SIGTERM (Slurm pre-emption, ``docker stop``, ``kill``), SIGINT (Ctrl-C) or SIGUSR1 during training: the update
    in progress finishes, then training stops as at the end of its budget, so the ``Checkpointer`` saves
    ``last.ckpt`` at the frame reached (atomically) and TensorBoard is flushed; ``received`` then names the signal.
    A second signal while that happens is ignored. The previous handlers are back once training ends."""

    SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")

    def __init__(self):
        self.received: str | None = None
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def on_train_start(self, trainer, pl_module):
        for name in self.SIGNALS:
            if hasattr(signal, name):
                self._previous[name] = signal.signal(getattr(signal, name), self._handle)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.received is not None:
            trainer.should_stop = True

    def _restore(self) -> None:
        for name, handler in self._previous.items():
            signal.signal(getattr(signal, name), handler)
        self._previous = {}

    def on_train_end(self, trainer, pl_module):
        self._restore()

    def on_exception(self, trainer, pl_module, exception):
        self._restore()
