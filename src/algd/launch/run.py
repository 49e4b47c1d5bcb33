"""One training run from a composed config: check it, build every part (:mod:`algd.build`), fit, report."""

from __future__ import annotations

from pathlib import Path

from algd.errors import Interrupted, TrainingStopped
from algd.launch import population as populations
from algd.launch.config import protocol_name
from algd.launch.lock import RunLock
from algd.launch.population import population_seeds
from algd.launch.resume import find_checkpoint
from algd.launch.runtime import default_threads, quiet_libraries
from algd.launch.validate import validate


def run(cfg) -> dict[str, float]:
    """Train one run described by ``cfg``; returns the final evaluation metrics."""
    validate(cfg)
    quiet_libraries()
    from algd import build

    device = build.resolve_device(cfg)  # the learner's and the replay storage's; envs and acting stay on CPU
    out_dir = Path(cfg.paths.output_dir)
    with RunLock(out_dir):  # one writer per run directory
        return _run(cfg, device, out_dir)


def _run(cfg, device, out_dir: Path) -> dict[str, float]:
    import lightning as L
    import torch

    from algd import build
    from algd.callbacks.checkpoint import Resume, checkpoint_frames, load_checkpoint
    from algd.learner.module import NonFiniteLossError

    ckpt, ckpt_path = None, None
    own = last_checkpoint(cfg.get("callbacks") or {}, out_dir)  # (from the config: no callback is built yet)
    if cfg.get("resume"):
        _, ckpt_path = find_checkpoint(cfg.resume)
    elif own.is_file():  # a requeued job (or a rerun into a fixed hydra.run.dir): continue, never overwrite
        ckpt_path = own
        print(f"[algd] {out_dir} already holds {own.name}: continuing that run (a requeued job?)")
    if ckpt_path is not None:
        ckpt = load_checkpoint(ckpt_path)
        if checkpoint_frames(ckpt) >= int(cfg.total_frames):
            print(
                f"[algd] nothing to do: {ckpt_path} is at frame {checkpoint_frames(ckpt)} and total_frames="
                f"{cfg.total_frames}; pass a larger total_frames to extend the run"
            )
            return {}
        device = build.keep_precision(device, ckpt, str(cfg.trainer.get("precision", "32-true")))
    threads = default_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    seeds = population_seeds(cfg)  # a population of len(seeds) agents, or None: one
    size = len(seeds) if seeds else 1
    L.seed_everything(seeds[0] if seeds else int(cfg.seed), workers=True, verbose=False)
    components = build.build_components(cfg, device, size)
    factory = build.build_env(cfg)
    info = factory.info
    announce(cfg, out_dir, info, build.cost_target(cfg, info), device)

    dm = build.build_data(cfg, factory, device, seeds)
    try:
        model = build.build_learner(cfg, dm.specs(), info, device, components, population=size)
        dm.set_policy(model.actor)
        # A resumed run appends to the same TensorBoard run; points after the checkpoint's frame (logged by the
        # interrupted process after its last checkpoint) are purged, so every curve has one point per frame.
        purge = checkpoint_frames(ckpt) + 1 if ckpt is not None else None
        callbacks = build.build_callbacks(cfg)
        if seeds:  # each member logs into a run directory of its own; the population has no logger
            logger, population = None, populations.prepare(cfg, out_dir, seeds)
            with torch.random.fork_rng(devices=[]):  # (the template's initial weights are never used)
                single = build.build_learner(cfg, dm.specs(), info, build.Device("cpu", cuda_graphs=False))
            members = populations.build_members(cfg, population, seeds, purge)
            callbacks = populations.population_callbacks(callbacks, members, single)
        else:
            logger = build.build_logger(cfg, purge_step=purge)
        if ckpt is not None:  # first: the others read the restored frame counter
            callbacks = {"resume": Resume(ckpt, ckpt_path), **callbacks}
            ckpt = None
        trainer = build.build_trainer(cfg, device, logger, callbacks.values())
        stop = callbacks.get("signal_stop")
        try:
            trainer.fit(model, datamodule=dm)
            if stop is not None and stop.received is not None:
                stop.hold()
        except NonFiniteLossError as err:
            raise TrainingStopped(non_finite_message(err, dm, model, callbacks, out_dir)) from None
        for run_logger in [logger] if logger is not None else [m.logger for m in members]:
            run_logger.experiment.flush()
    finally:
        dm.close()
    if stop is not None and stop.received is not None:
        raise Interrupted(
            f"{stop.received} at frame {dm.frames} ({model.updates} updates): the run is saved in "
            f"{last_checkpoint(callbacks, out_dir)}; continue it with: {resume_command(out_dir)}",
            dm.frames,
            stop.received,
            requeue=stop.requeue,
            release=stop.release,
        )
    if seeds:
        return populations.finish(callbacks["population"], dm.frames, model.updates)
    evaluator = callbacks.get("evaluator")
    final = dict(evaluator.last) if evaluator is not None else {}
    print(
        f"[algd] done: {dm.frames} frames, {model.updates} updates; final eval return "
        f"{final.get('eval/return', float('nan')):.2f}, cost {final.get('eval/cost', float('nan')):.2f}"
    )
    return final


def announce(cfg, out_dir: Path, info, h: float, device) -> None:
    """The run's first lines: where it writes, how to watch it, the task, its limit and h, the algorithm, where the
    learner runs and in which precision (and why)."""
    discounted = info.eval_cost_discount is not None
    limit = (
        f"{info.cost_limit:g} (discounted episode cost, γ = {info.eval_cost_discount:g})"
        if discounted
        else f"{info.cost_limit:g} (episode cost)"
    )
    print(f"[algd] run dir: {out_dir}")
    print(f"[algd] monitor: tensorboard --logdir {out_dir.parent if 'multiruns' in str(out_dir) else out_dir}")
    print(
        f"[algd] env {info.name} ({protocol_name(cfg)} protocol): episode {info.episode_length} steps, cost limit "
        f"{limit}, h = {h:.4f}; actor {cfg.actor.name}, energy {cfg.energy._target_.split('.')[-1]}, "
        f"{seed_text(cfg)}, {cfg.total_frames} frames ({cfg.warmup_frames} warm-up), utd {cfg.utd}"
    )
    print(f"[algd] {device.why}")


def seed_text(cfg) -> str:
    seeds = population_seeds(cfg)
    if not seeds:
        return f"seed {cfg.seed}"
    return f"a population of {len(seeds)} seeds {seeds} (members in {Path(cfg.paths.output_dir) / 'seed<s>'})"


def last_checkpoint(callbacks, out_dir: Path) -> Path:
    """Where this run's resumable checkpoint is (the Checkpointer's folder), from the built callbacks or from the
    config's ``callbacks`` node."""
    checkpointer = callbacks.get("checkpointer")
    return (Path(checkpointer.dirpath) if checkpointer is not None else out_dir / "checkpoints") / "last.ckpt"


def resume_command(out_dir: Path) -> str:
    return f"python -m algd.train resume={out_dir}"


def non_finite_message(err, dm, model, callbacks: dict, out_dir: Path) -> str:
    """Why training stopped on a NaN/Inf loss, what was saved, and the command that continues the run."""
    checkpointer, last = callbacks.get("checkpointer"), last_checkpoint(callbacks, out_dir)
    if checkpointer is not None and checkpointer.saved_on_exception:
        where = f"the last finite state (frame {dm.frames}, {model.updates} updates) is saved in {last}"
    elif last.exists():
        where = f"parameters were already non-finite; the last good checkpoint is {last}"
    else:
        where = "parameters were already non-finite and no checkpoint was saved yet"
    return (
        f"non-finite {err.name} ({err.value}) at frame {dm.frames}, update {err.update + 1}: training "
        f"stopped; {where}. Change the config (e.g. a lower optim.lr, grad_clip=1.0) and continue with: "
        f"{resume_command(out_dir)} <changed keys>"
    )
