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

from algd.actors import acting_copy, load_weights_
from algd.envs import EnvInfo, episode_cost, reseed
from algd.errors import CheckpointError

EVAL_SEED_OFFSET = 10_000  # evaluation episodes (and videos) are seeded with seed + EVAL_SEED_OFFSET


def _writer(trainer: L.Trainer):
    return trainer.logger.experiment if trainer.logger is not None else None


def log_scalars(trainer: L.Trainer, scalars: dict[str, float], frames: int) -> None:
    writer = _writer(trainer)
    if writer is None:
        return
    for key, value in scalars.items():
        writer.add_scalar(key, value, frames)


def log_finished_episodes(trainer: L.Trainer) -> None:
    """Each training episode finished since the last call, at the frame at which it ended."""
    for ret, cost, length, end_frame in trainer.datamodule.episodes.pop_new():
        log_scalars(trainer, {"train/episode_return": ret, "train/episode_cost": cost,
                              "train/episode_length": length}, end_frame)


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
        log_finished_episodes(trainer)
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


def evaluate(policy, env, episodes: int, max_steps: int, cost_limit: float | None = None,
             cost_discount: float | None = None) -> dict[str, float]:
    """Deterministic episodes; undiscounted return. ``eval/cost`` is the episode cost as the task's limit counts it:
    the plain sum, or with ``cost_discount`` = γ the discounted sum Σ_t γ^t·c_t (then ``eval/cost_undiscounted``
    holds the plain sum too). Returns means and standard deviations and, given the ``cost_limit``, the violation
    rate: the fraction of episodes whose cost exceeds it."""
    returns, costs, plain_costs, lengths = [], [], [], []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            td = env.rollout(max_steps, policy, break_when_any_done=True)
            returns.append(td["next", "reward"].sum().item())
            costs.append(episode_cost(td["next", "cost"], cost_discount))
            if cost_discount is not None:  # the plain sum as well (else it is ``costs`` itself)
                plain_costs.append(episode_cost(td["next", "cost"]))
            lengths.append(td.numel())
    r, c = torch.tensor(returns), torch.tensor(costs)
    out = {"eval/return": r.mean().item(), "eval/cost": c.mean().item(),
           "eval/return_std": r.std(unbiased=False).item(), "eval/cost_std": c.std(unbiased=False).item(),
           "eval/length": sum(lengths) / len(lengths)}
    if cost_discount is not None:
        out["eval/cost_undiscounted"] = sum(plain_costs) / len(plain_costs)
    if cost_limit is not None:
        out["eval/violation_rate"] = (c > cost_limit).float().mean().item()
    return out


def refreshed_copy(copy: torch.nn.Module | None, actor: torch.nn.Module) -> torch.nn.Module:
    """A CPU acting copy of the learner's ``actor`` for evaluation: made on first use, then refreshed in place."""
    if copy is None:
        return acting_copy(actor).eval()
    load_weights_(copy, actor)
    return copy


class Evaluator(_EveryFrames):
    """Every ``every_frames`` (and at the end of training) run ``episodes`` deterministic episodes on a separate
    env and log ``eval/return``, ``eval/cost`` (γ-discounted where ``info.eval_cost_discount`` is set).

    Each evaluation re-seeds its env and its random numbers with ``seed + 10_000`` inside a forked RNG: every
    evaluation sees the same episodes, and evaluating never changes the training run's random stream (so a run
    that evaluates at other frames, or a resumed one, trains identically)."""

    def __init__(self, env_factory, info: EnvInfo, seed: int, every_frames: int, episodes: int = 5):
        super().__init__(every_frames)
        self.env_factory, self.info, self.seed, self.episodes = env_factory, info, int(seed), int(episodes)
        self.env = None
        self.actor = None  # a CPU copy of the learner's actor, refreshed before each evaluation
        self.last: dict[str, float] = {}

    def fire(self, trainer, pl_module, frames):
        if self.episodes <= 0:
            return
        seed = self.seed + EVAL_SEED_OFFSET
        if self.env is None:
            self.env = self.env_factory(seed)
        self.actor = refreshed_copy(self.actor, pl_module.actor)
        with torch.random.fork_rng(devices=[]):  # the copy acts on CPU
            torch.manual_seed(seed)
            reseed(self.env, seed)
            self.last = evaluate(self.actor.policy(), self.env, self.episodes, self.info.episode_length,
                                 self.info.cost_limit, self.info.eval_cost_discount)
        log_scalars(trainer, self.last, frames)
        tqdm.write(f"[eval] frames {frames}: return {self.last['eval/return']:.2f} ± {self.last['eval/return_std']:.2f}"
                   f"  cost {self.last['eval/cost']:.2f} ± {self.last['eval/cost_std']:.2f}"
                   f"  (limit {self.info.cost_limit:g}{' discounted' if self.info.eval_cost_discount else ''}, "
                   f"{self.episodes} episodes)")

    def on_train_end(self, trainer, pl_module):
        frames = trainer.datamodule.frames
        if not self.last or self._next is None or frames > self._next - self.every_frames:
            self.fire(trainer, pl_module, frames)
        if self.env is not None:
            self.env.close()
            self.env = None


class VideoRecorder(_EveryFrames):
    """Every ``every_frames`` frames (0 or None: never) one deterministic evaluation episode (the Evaluator's first,
    same seed), rendered at ``width`` × ``height`` on its own render env (at most ``max_frames`` frames), logged to
    TensorBoard as ``eval/video`` at ``fps``. When videos cannot be made (no renderer, no moviepy 1.x) it prints one
    warning naming the cause and the fix, and training goes on without videos."""

    TAG = "eval/video"

    def __init__(self, env_factory, info: EnvInfo, seed: int, every_frames: int | None, max_frames: int = 400,
                 width: int = 128, height: int = 128, fps: int = 30, camera: str | None = "track"):
        super().__init__(every_frames or 0)
        self.env_factory, self.info, self.seed = env_factory, info, int(seed)
        self.max_frames, self.width, self.height, self.fps = int(max_frames), int(width), int(height), int(fps)
        self.camera = camera
        self.env = self.actor = None

    def _turn_off(self, why: str) -> None:
        self._next = None
        tqdm.write(f"[algd] warning: evaluation videos are off: {why}; training continues", file=sys.stderr)
        self._close()

    def on_train_start(self, trainer, pl_module):
        super().on_train_start(trainer, pl_module)
        from algd.video import tensorboard_video_problem

        problem = tensorboard_video_problem() if self._next is not None else None
        if problem:
            self._turn_off(f"{problem} (fix: pip install -c constraints.txt moviepy==1.0.3)")

    def fire(self, trainer, pl_module, frames):
        from algd.video import record_episode, render_failure

        writer = _writer(trainer)
        if writer is None:
            return
        seed = self.seed + EVAL_SEED_OFFSET
        self.actor = refreshed_copy(self.actor, pl_module.actor)
        try:
            if self.env is None:
                self.env = self.env_factory.render_env(seed, self.width, self.height, self.camera)
            video = record_episode(self.env, self.actor.policy(), seed, self.max_frames)
        except Exception as err:  # noqa: BLE001  (a missing GL library must not stop a long run)
            self._turn_off(render_failure(self.info.name, err))
            return
        writer.add_video(self.TAG, torch.from_numpy(video).permute(0, 3, 1, 2).unsqueeze(0), frames, fps=self.fps)

    def _close(self):
        if self.env is not None:
            self.env.close()
            self.env = None

    def on_train_end(self, trainer, pl_module):
        self._close()

    def on_exception(self, trainer, pl_module, exception):
        self._close()


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
        raise CheckpointError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]} "
                              f"(file truncated or corrupt? periodic copies are in {path.parent})") from None
    missing = [k for k in ("state_dict", "optimizer_states", "RLDataModule") if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not an algd training checkpoint (missing {', '.join(missing)})")
    return ckpt


def restore_checkpoint(ckpt: dict, trainer: L.Trainer, pl_module, path: Path) -> None:
    """Load everything a run needs to continue: networks and targets, optimiser states (hyper-parameters such as
    the learning rate come from the current config), multiplier, counters, episode statistics, replay buffer."""
    try:
        pl_module.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(f"checkpoint {path} does not match the model built from this config (different "
                              f"actor, sizes or ensemble?): {first}") from None
    pl_module.on_load_checkpoint(ckpt)
    optimizers = trainer.optimizers
    if len(optimizers) != len(ckpt["optimizer_states"]):
        raise CheckpointError(f"checkpoint {path} has {len(ckpt['optimizer_states'])} optimiser states, the "
                              f"config builds {len(optimizers)}")
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
        tqdm.write(f"[algd] resumed from {self.path} at frame {dm.frames}: {dm.updates} updates, replay buffer "
                   f"{len(dm.buffer)} transitions, lambda {pl_module.multiplier.lam.item():.6g}")
        self.ckpt = None
        dm.restore_rng()


def params_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class Checkpointer(_EveryFrames):
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
        writer = _writer(trainer)
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
        from algd.module import NonFiniteLossError

        self.saved_on_exception = False
        if isinstance(exception, NonFiniteLossError) and params_finite(pl_module):
            trainer.datamodule.updates = pl_module.updates  # the failed update did not complete
            self.save_last(trainer)
            self.saved_on_exception = True


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
            self.bar = None

    def on_exception(self, trainer, pl_module, exception):
        if self.bar is not None:  # an error message then starts on its own line
            self.bar.close()
            self.bar = None

