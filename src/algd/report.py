"""Across-seed report of a sweep: ``python -m algd.report <sweep dir> [--out DIR]`` (console script ``algd-report``,
``make report SWEEP=<dir>``).

Reads the TensorBoard events of every run under the folder, groups runs by config (their overrides minus ``seed``),
aligns the curves on the environment-frame axis and aggregates across seeds: mean with a 95 % bootstrap interval,
and the interquartile mean (IQM) where a config has at least ``IQM_MIN_SEEDS`` seeds. Writes PNG plots (eval return,
eval cost with the cost limit, λ, violation and the logged diagnostics vs frames) and ``report.md`` (final values per
config and per run) into ``<sweep>/report/``. Works on partial sweeps: unfinished runs count with the points they
have, failed runs (``status.json``) are listed and skipped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from algd.errors import ConfigError
from algd.reporting.tables import report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="algd-report", description=__doc__.split("\n\n")[1])
    parser.add_argument("sweep", nargs="?", help="a sweep folder (or any folder of runs, e.g. logs/runs/toy)")
    parser.add_argument("--out", help="output folder (default: <sweep>/report)")
    parser.add_argument(
        "--archive",
        metavar="DIR",
        help="instead of a report, write a compact copy of the runs (configs, status, curves; no checkpoints) into "
        "DIR, which the report reads like the runs",
    )
    args = parser.parse_args(argv)
    try:
        if not args.sweep:
            raise ConfigError("give a sweep folder: make report SWEEP=logs/ablations/<name>/<env>/<time>")
        if args.archive:
            from algd.reporting.runs import archive

            written = archive(Path(args.sweep), Path(args.archive))
            print(f"[algd] archived {len(written)} runs into {args.archive} (make report SWEEP={args.archive})")
            return
        out = report(Path(args.sweep), args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.code) from None
    print((out / "report.md").read_text().split("\n## Plots")[0])
    print(f"[algd] report: {out / 'report.md'} and {', '.join(p.name for p in sorted(out.glob('*.png')))}")


if __name__ == "__main__":
    main()
