"""``algd-eval``: a trained policy, rebuilt from its run's config, on deterministic episodes (and as a video)."""

from __future__ import annotations

import argparse

from algd.errors import AlgdError, ConfigError
from algd.launch.argv import rewrite_argv
from algd.launch.config import override_key, protocol_name
from algd.launch.population import member_dirs
from algd.launch.resume import load_run, merge_overrides
from algd.launch.runtime import default_threads, quiet_libraries
from algd.launch.validate import validate


def evaluate_run(args: argparse.Namespace) -> dict[str, float]:
    run_dir, ckpt_path, original = load_run(args.run, key="run")  # bad input fails before the heavy imports
    members = member_dirs(run_dir)
    if members:
        raise ConfigError(
            f"{run_dir} is a population of {len(members)} seeds; evaluate one member: {members[0]} (or "
            f"{', '.join(m.name for m in members[1:])})"
        )
    new = rewrite_argv(args.overrides)

    import torch

    from algd import build
    from algd.callbacks.checkpoint import checkpoint_frames, load_checkpoint
    from algd.callbacks.evaluation import POLICY_EVAL_SEED_OFFSET, evaluate

    overrides = [a for a in merge_overrides(original, new) if not override_key(a).startswith("hydra")]
    cfg = build.compose(overrides)
    validate(cfg)
    quiet_libraries()
    seed = int(cfg.seed) if any(override_key(a) == "seed" for a in new) else int(cfg.seed) + POLICY_EVAL_SEED_OFFSET
    threads = default_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(ckpt_path)
    factory = build.build_env(cfg)
    info = factory.info
    env = factory(seed)
    try:
        actor = build.restore_learner(cfg, env, info, ckpt, ckpt_path).actor.requires_grad_(False).eval()
        frames = checkpoint_frames(ckpt)
        print(
            f"[algd] evaluating {ckpt_path} (frame {frames}, actor {cfg.actor.name}) on {info.name} "
            f"({protocol_name(cfg)} protocol, {info.episode_length}-step episodes, cost limit {info.cost_limit:g}): "
            f"{args.episodes} deterministic episodes, seed {seed}",
            flush=True,
        )
        torch.manual_seed(seed)
        env.reseed(seed)
        stats = evaluate(
            actor.policy(), env, args.episodes, info.episode_length, info.cost_limit, info.eval_cost_discount
        )
    finally:
        env.close()
    rate = stats["eval/violation_rate"]
    print(f"episodes: {args.episodes}")
    print(f"return: {stats['eval/return']:.3f} ± {stats['eval/return_std']:.3f}")
    kind = f"discounted with γ = {info.eval_cost_discount:g}, " if info.eval_cost_discount is not None else ""
    print(f"cost: {stats['eval/cost']:.3f} ± {stats['eval/cost_std']:.3f} ({kind}limit {info.cost_limit:g})")
    print(
        f"violation rate: {rate:.3f} ({round(rate * args.episodes)} of {args.episodes} episodes with cost > "
        f"{info.cost_limit:g})"
    )
    print(f"length: {stats['eval/length']:.1f}")
    if args.video:
        path = write_video(cfg, factory, actor, seed, run_dir / "eval" / f"{ckpt_path.stem}_seed{seed}")
        print(f"[algd] video: {path}")
    return stats


def write_video(cfg, factory, actor, seed: int, stem):
    """One deterministic episode (the first of the evaluation, same seed) as a video file; its path."""
    from algd.callbacks.video import record_episode, render_failure, write_video_file

    video, env = cfg.callbacks.video, None
    try:
        env = factory.render_env(seed, video.width, video.height, video.camera)
        frames = record_episode(env, actor.policy(), seed, int(video.max_frames))
    except Exception as err:  # noqa: BLE001  (whatever the GL stack raises)
        raise AlgdError(render_failure(factory.info.name, err)) from None
    finally:
        if env is not None:
            env.close()
    return write_video_file(frames, stem, int(video.fps))
