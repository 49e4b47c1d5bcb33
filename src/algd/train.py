"""Training entry point: ``python -m algd.train env=<name> <hydra overrides>`` (console script ``algd-train``).

The command line is checked (:mod:`algd.launch.argv`) and a ``resume=`` expanded (:mod:`algd.launch.resume`) before
Hydra starts; each Hydra job then runs :func:`algd.launch.sweep.task`, which trains one run with
:func:`algd.launch.run.run` (every part built by :mod:`algd.build`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from algd.errors import ConfigError, RunBusy
from algd.launch.argv import check_ablation, check_launcher, rewrite_argv
from algd.launch.config import CONFIG_DIR
from algd.launch.lock import check_free
from algd.launch.resume import expand_resume, keep_config_history


def main(argv: list[str] | None = None) -> None:
    import hydra

    from algd.launch.runtime import headless_rendering
    from algd.launch.sweep import SweepSummary, summarize_sweep, task

    headless_rendering()
    try:
        args, resume_dir = expand_resume(sys.argv[1:] if argv is None else argv)
        check_launcher(args)
        sys.argv = [sys.argv[0], *rewrite_argv(args)]
        check_ablation(args)
        if resume_dir is not None:
            check_free(resume_dir)  # a live run's directory is refused before anything is written into it
    except (ConfigError, RunBusy) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.code) from None
    if resume_dir is not None:
        keep_config_history(resume_dir)
    try:
        hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(task)()
    except SystemExit as stop:
        sweep = SweepSummary.state
        jobs = sweep["dir"] and not sweep["summarized"] and any(Path(sweep["dir"]).glob("**/.hydra"))
        if stop.code not in (0, None) and jobs:
            print("\n[algd] the launcher stopped the sweep (error above); its jobs so far:", file=sys.stderr)
            summarize_sweep(Path(sweep["dir"]))
        raise
    if SweepSummary.state["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
