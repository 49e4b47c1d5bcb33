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

from algd.errors import ConfigError, OneLineParser, exit_on_error

USAGE = "algd-eval <run dir or checkpoint> [--episodes N] [--video] [key=value ...]"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = OneLineParser(prog="algd-eval", usage=USAGE, description=__doc__.split("\n\n")[1])
    parser.add_argument("run", nargs="?", help="a run directory (logs/runs/<env>/<run>) or a checkpoint file in it")
    parser.add_argument("--episodes", type=int, default=20, help="deterministic episodes (default 20)")
    parser.add_argument("--video", action="store_true", help="also write one episode as a video file")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides on top of the run's config, e.g. protocol=standard seed=3 callbacks.video.width=256",
    )
    args = parser.parse_intermixed_args(argv)
    if not args.run:
        raise ConfigError(f"no run given: pass a run directory or checkpoint (usage: {USAGE})")
    if args.episodes < 1:
        raise ConfigError(f"invalid --episodes {args.episodes}: must be an integer >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    from algd.launch.evaluation import evaluate_run
    from algd.launch.runtime import headless_rendering

    headless_rendering()

    exit_on_error(lambda: evaluate_run(parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
