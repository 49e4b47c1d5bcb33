"""Checkpoints: find, load, restore and save (atomically) the complete resumable state; the ``Checkpointer`` and
``Resume`` callbacks."""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import lightning as L
import torch
from tqdm.auto import tqdm

from algd.callbacks.frames import EveryFrames, log_finished_episodes, tb_writer
from algd.callbacks.population import member_trainers, population_of
from algd.errors import CheckpointError, SaveFailed
from algd.learner.module import NonFiniteLossError

# Where Lightning puts the DataModule's state: under its class name (a population's is PopulationDataModule).
DATA_KEYS = ("RLDataModule", "PopulationDataModule")


def data_state(ckpt: dict) -> dict:
    """The DataModule's state in a loaded checkpoint."""
    return next(ckpt[key] for key in DATA_KEYS if key in ckpt)


def checkpoint_frames(ckpt: dict) -> int:
    """The environment frame a loaded checkpoint was taken at."""
    return int(data_state(ckpt)["frames"])


def atomic_save_checkpoint(trainer: L.Trainer, path: Path, with_replay: bool = False) -> None:
    """Write to a temporary file in the same folder, then rename: a kill mid-save never corrupts ``path``.
    ``with_replay`` adds the replay buffer contents (what a resume needs besides the weights)."""

    def write(tmp: Path) -> None:
        if with_replay:
            with trainer.datamodule.replay_in_checkpoint():
                trainer.save_checkpoint(tmp, weights_only=False)
        else:
            trainer.save_checkpoint(tmp, weights_only=False)

    atomic_write(path, write)


def atomic_write(path: Path, write) -> None:
    """``write(tmp)`` into a temporary file beside ``path``, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
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
    missing = [k for k in ("state_dict", "optimizer_states") if k not in ckpt]
    missing += [] if any(k in ckpt for k in DATA_KEYS) else ["RLDataModule"]
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
    trainer.datamodule.load_state_dict(data_state(ckpt))


class Resume(L.Callback):
    """Restores a checkpoint when training starts (before the frame-keyed callbacks read the frame counter) and
    sets the RNG states last, so the first random draw after it is the one the interrupted run would have made."""

    def __init__(self, ckpt: dict, path: Path):
        self.ckpt, self.path = ckpt, Path(path)

    def on_train_start(self, trainer, pl_module):
        restore_checkpoint(self.ckpt, trainer, pl_module, self.path)
        dm = trainer.datamodule
        members = range(pl_module.population) if pl_module.population > 1 else [None]
        lam = ", ".join(f"{pl_module.lagrange_multiplier(m):.6g}" for m in members)
        tqdm.write(
            f"[algd] resumed from {self.path} at frame {dm.frames}: {pl_module.updates} updates, replay "
            f"buffer {dm.replay_size} transitions{' per member' if pl_module.population > 1 else ''}, lambda {lam}"
        )
        self.ckpt = None
        dm.restore_rng()


def params_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class Checkpointer(EveryFrames):
    """``checkpoints/last.ckpt`` (with the replay buffer: what ``resume=`` needs) every ``every_frames``, every
    ``every_minutes`` of wall-clock time (so a SIGKILL or a power cut costs at most that, at any UTD), at the end, and
    when a loss turns non-finite (if the parameters are still finite); plus weights-only
    ``checkpoints/frame_<N>.ckpt`` snapshots every ``every_frames``. A save that fails (a full disk, an I/O or
    permission error) stops training with :class:`~algd.errors.SaveFailed`; the previous ``last.ckpt`` is intact."""

    def __init__(self, dirpath: str, every_frames: int, every_minutes: float | None = None, keep_periodic: bool = True):
        super().__init__(every_frames)
        self.dirpath, self.keep_periodic = Path(dirpath), bool(keep_periodic)
        self.every_seconds = 60.0 * float(every_minutes) if every_minutes else None
        self.saved_on_exception: bool | None = None
        self.saved_frame: int | None = None  # the frame of the last.ckpt on disk
        self._saved_at = time.monotonic()

    @property
    def last(self) -> Path:
        return self.dirpath / "last.ckpt"

    def _save(self, trainer, path: Path, with_replay: bool = False) -> None:
        population = population_of(trainer)
        try:
            atomic_save_checkpoint(trainer, path, with_replay=with_replay)
            # a population's members: weights-only checkpoints of their own, as their single runs would have
            for member_path, ckpt in population.member_checkpoints(trainer, path.name) if population else ():
                atomic_write(member_path, lambda tmp, ckpt=ckpt: torch.save(ckpt, tmp))
        except OSError as err:
            cause = f"{err.strerror or err}" + (
                f" (errno {errno.errorcode.get(err.errno, err.errno)})" if err.errno else ""
            )
            previous = (
                f"{self.last} (frame {self.saved_frame}) is intact and resumes the run"
                if self.saved_frame is not None and self.last.is_file()
                else "no checkpoint was saved before"
            )
            raise SaveFailed(
                f"cannot write checkpoint {path}: {cause}; training stopped at frame {trainer.datamodule.frames} "
                f"({previous})",
                path,
            ) from None

    def save_last(self, trainer) -> None:
        # Everything logged up to this frame reaches the disk first: a resumed run purges TensorBoard points
        # after the checkpoint's frame and re-logs from there, so the curves continue without gaps or duplicates.
        for run in member_trainers(trainer):  # the run, or each member of a population
            log_finished_episodes(run)
            writer = tb_writer(run)
            if writer is not None:
                writer.flush()
        self._save(trainer, self.last, with_replay=True)
        self.saved_frame, self._saved_at = trainer.datamodule.frames, time.monotonic()

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        self._saved_at = time.monotonic()
        self.saved_frame = trainer.datamodule.frames if self.last.is_file() else None  # (a resumed run's)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self.every_seconds is not None and time.monotonic() - self._saved_at >= self.every_seconds:
            self.save_last(trainer)

    def fire(self, trainer, pl_module, frames):
        self.save_last(trainer)
        if self.keep_periodic:
            self._save(trainer, self.dirpath / f"frame_{frames}.ckpt")

    def on_train_end(self, trainer, pl_module):
        self.save_last(trainer)

    def on_exception(self, trainer, pl_module, exception):
        self.saved_on_exception = False
        if isinstance(exception, NonFiniteLossError) and params_finite(pl_module):
            self.save_last(trainer)  # the failed update did not complete: the learner's counter excludes it
            self.saved_on_exception = True


def requeue_signal() -> str | None:
    """The signal a submitit job (``hydra/launcher=submitit_slurm|submitit_local``) is pre-empted or timed out with
    (``SIGUSR2`` unless ``SUBMITIT_PREEMPT_SIGNAL`` says otherwise), if submitit handles it in this process; None
    outside such a job."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    name = "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
    return name if hasattr(signal, name) and callable(signal.getsignal(getattr(signal, name))) else None


class SignalStop(L.Callback):
    """SIGTERM (Slurm pre-emption, ``docker stop``, ``kill``), SIGINT (Ctrl-C) or SIGUSR1 during training: the update
    in progress finishes, then training stops as at the end of its budget, so the ``Checkpointer`` saves
    ``last.ckpt`` at the frame reached (atomically) and TensorBoard is flushed; ``received`` then names the signal.
    A second signal while that happens is ignored, and so are later ones until the job wrapper has written the run's
    status and calls :meth:`release` (or the process exits); without a signal the previous handlers are back once
    training ends.

    In a submitit job the pre-emption / time-out signal (:func:`requeue_signal`) is taken over the same way, and
    ``requeue`` is then True: once the checkpoint and the status are written, the job wrapper delivers the signal
    to submitit's own handler (:func:`algd.launch.sweep.task`), which requeues the job; the requeued job finds
    ``last.ckpt`` in its run directory and continues it."""

    SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")

    def __init__(self):
        self.received: str | None = None
        self.requeue_signal: str | None = None
        self._previous: dict = {}

    @property
    def requeue(self) -> bool:
        return self.received is not None and self.received == self.requeue_signal

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def on_train_start(self, trainer, pl_module):
        self.requeue_signal = requeue_signal()
        names = [*self.SIGNALS, *([self.requeue_signal] if self.requeue_signal else [])]
        for name in names:
            if hasattr(signal, name):
                self._previous[name] = signal.signal(getattr(signal, name), self._handle)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.received is not None:
            trainer.should_stop = True

    def hold(self) -> None:
        """After ``fit`` (whose teardown puts back the handlers it found): ignore the signals until :meth:`release`
        or the exit. ``SIG_IGN``, not a Python handler: the interpreter resets Python handlers to the default
        (terminate) when it starts shutting down, and a signal during the rest of the shutdown would kill it."""
        for name in self._previous:
            signal.signal(getattr(signal, name), signal.SIG_IGN)

    def release(self) -> None:
        """Give the signals back to their previous handlers."""
        for name, handler in self._previous.items():
            signal.signal(getattr(signal, name), handler)
        self._previous = {}

    def on_train_end(self, trainer, pl_module):
        if self.received is None:
            self.release()

    def on_exception(self, trainer, pl_module, exception):
        self.release()
