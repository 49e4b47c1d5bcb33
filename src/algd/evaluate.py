"""Evaluate a trained policy: ``python -m algd.evaluate <run dir or checkpoint> [--episodes N] [--video] [overrides]``
(console script ``algd-eval``; ``make eval RUN=... EPISODES=20 VIDEO=1 ARGS="..."``).

Rebuilds the actor from the run's own config (its ``.hydra/overrides.yaml`` replayed through Hydra, then the given
overrides, e.g. ``protocol=standard`` or ``seed=3``), loads its weights from the checkpoint, runs deterministic
episodes on the run's env (or the overridden one) and prints return and cost mean ± std and the cost-limit violation
rate (the statistics of :func:`algd.callbacks.evaluate`). ``--video`` writes one episode (the first) to
``<run dir>/eval/<checkpoint>_seed<seed>.mp4`` (``.gif`` without imageio-ffmpeg).
"""

from __future__ import annotations

import argparse
import sys

from algd.errors import AlgdError, CheckpointError, ConfigError

SEED_OFFSET = 20_000  # default episode seed: the run's seed + 20000 (training evaluations use + 10000)
USAGE = "algd-eval <run dir or checkpoint> [--episodes N] [--video] [key=value ...]"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit code 2 (argparse would print the usage block too)
        raise ConfigError(f"{message} (usage: {USAGE})")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = _Parser(prog="algd-eval", usage=USAGE, description=__doc__.split("\n\n")[1])
    parser.add_argument("run", nargs="?", help="a run directory (logs/runs/<env>/<run>) or a checkpoint file in it")
    parser.add_argument("--episodes", type=int, default=20, help="deterministic episodes (default 20)")
    parser.add_argument("--video", action="store_true", help="also write one episode as a video file")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides on top of the run's config, e.g. "
                        "protocol=standard seed=3 callbacks.video.width=256")
    args = parser.parse_intermixed_args(argv)
    if not args.run:
        raise ConfigError(f"no run given: pass a run directory or checkpoint (usage: {USAGE})")
    if args.episodes < 1:
        raise ConfigError(f"invalid --episodes {args.episodes}: must be an integer >= 1")
    return args


def compose_config(overrides: list[str]):
    """The training config composed from ``configs/`` with ``overrides``, as ``algd.train`` would see it."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    from algd.train import CONFIG_DIR

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="algd_eval"):
            return compose(config_name="train", overrides=overrides)
    except HydraException as err:
        raise ConfigError(" ".join(str(err).split())) from None


def evaluate_run(args: argparse.Namespace) -> dict[str, float]:
    from algd.train import _override_key, build, default_threads, load_run, merge_overrides, quiet_libraries
    from algd.train import protocol_name, rewrite_argv, validate

    run_dir, ckpt_path, original = load_run(args.run, key="run")  # bad input fails before the heavy imports
    new = rewrite_argv(args.overrides)

    import torch
    from hydra.utils import instantiate

    from algd.callbacks import evaluate, load_checkpoint
    from algd.data import env_specs
    from algd.envs import reseed

    overrides = [a for a in merge_overrides(original, new) if not _override_key(a).startswith("hydra")]
    cfg = compose_config(overrides)
    validate(cfg)
    quiet_libraries()
    seed = int(cfg.seed) if any(_override_key(a) == "seed" for a in new) else int(cfg.seed) + SEED_OFFSET
    threads = default_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    ckpt = load_checkpoint(ckpt_path)
    factory = instantiate(cfg.env, _convert_="all")
    info = factory.info
    env = factory(seed)
    try:
        actor = build(cfg.actor)(**env_specs(env))
        state = {k.removeprefix("actor."): v for k, v in ckpt["state_dict"].items() if k.startswith("actor.")}
        try:
            actor.load_state_dict(state)
        except RuntimeError as err:
            first = " ".join(str(err).split())[:300]
            raise CheckpointError(f"checkpoint {ckpt_path} does not fit the actor built from the config "
                                  f"(env {info.name}, actor {cfg.actor.name}): {first}") from None
        actor.requires_grad_(False).eval()
        frames = int(ckpt["RLDataModule"]["frames"])
        print(f"[algd] evaluating {ckpt_path} (frame {frames}, actor {cfg.actor.name}) on {info.name} "
              f"({protocol_name(cfg)} protocol, {info.episode_length}-step episodes, cost limit {info.cost_limit:g}): "
              f"{args.episodes} deterministic episodes, seed {seed}", flush=True)
        torch.manual_seed(seed)
        reseed(env, seed)
        stats = evaluate(actor.policy(), env, args.episodes, info.episode_length, info.cost_limit,
                         info.eval_cost_discount)
    finally:
        env.close()
    rate = stats["eval/violation_rate"]
    print(f"episodes: {args.episodes}")
    print(f"return: {stats['eval/return']:.3f} ± {stats['eval/return_std']:.3f}")
    kind = f"discounted with γ = {info.eval_cost_discount:g}, " if info.eval_cost_discount is not None else ""
    print(f"cost: {stats['eval/cost']:.3f} ± {stats['eval/cost_std']:.3f} ({kind}limit {info.cost_limit:g})")
    print(f"violation rate: {rate:.3f} ({round(rate * args.episodes)} of {args.episodes} episodes with cost > "
          f"{info.cost_limit:g})")
    print(f"length: {stats['eval/length']:.1f}")
    if args.video:
        path = write_video(cfg, factory, actor, seed, run_dir / "eval" / f"{ckpt_path.stem}_seed{seed}")
        print(f"[algd] video: {path}")
    return stats


def write_video(cfg, factory, actor, seed: int, stem):
    """One deterministic episode (the first of the evaluation, same seed) as a video file; its path."""
    from algd.video import record_episode, render_failure, write_video_file

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


def main(argv: list[str] | None = None) -> None:
    try:
        evaluate_run(parse_args(sys.argv[1:] if argv is None else argv))
    except AlgdError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.code) from None


if __name__ == "__main__":
    main()
