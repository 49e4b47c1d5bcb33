"""One Hydra job (``task``: a failing sweep job records why and lets the others run) and the end-of-sweep summary."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback

from algd.errors import AlgdError, Interrupted, RunBusy
from algd.launch.population import member_dirs, population_dir
from algd.launch.status import is_multirun, status_records, write_status


def task(cfg) -> None:
    """One Hydra job. A failing job of a sweep records why (``status.json``, ``error.log``) and returns, so the other
    jobs run on and the sweep ends with a summary; a single run prints one line and exits non-zero."""
    import traceback

    out_dir = Path(cfg.paths.output_dir)
    started = time.time()
    try:
        from algd.launch.run import run

        final = run(cfg)
    except AlgdError as err:
        code = err.code
        if isinstance(err, Interrupted):
            write_status(
                out_dir,
                "interrupted",
                started=started,
                error=str(err),
                exit_code=code,
                frame=err.frame,
                requeued=err.requeue,
            )
            if err.requeue:  # saved: now submitit's own handler requeues the job (it exits this process)
                err.release()
                print(f"[algd] {err.signal_name} at frame {err.frame}: saved; the job is requeued", file=sys.stderr)
                signal.raise_signal(getattr(signal, err.signal_name))
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(code) from None  # a signal stops a sweep too; later signals stay ignored until the exit
        if not isinstance(err, RunBusy):  # (a busy run directory is another live run's: leave its status alone)
            write_status(out_dir, "failed", started=started, error=str(err), exit_code=code)
        if is_multirun():
            print(f"[algd] job failed ({out_dir.name}): {err}", file=sys.stderr)
            return
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(code) from None
    except Exception as err:  # noqa: BLE001
        (out_dir / "error.log").write_text(traceback.format_exc())
        write_status(out_dir, "failed", started=started, error=f"{type(err).__name__}: {err}", exit_code=1)
        if not is_multirun():
            raise
        traceback.print_exc()
        print(
            f"[algd] job failed ({out_dir.name}): {type(err).__name__}: {err}; traceback in {out_dir / 'error.log'}",
            file=sys.stderr,
        )
        return
    write_status(out_dir, "completed", started=started, final={k: float(v) for k, v in final.items()})


def summarize_sweep(sweep_dir: Path) -> tuple[int, int]:
    """Print which jobs of a sweep completed and which failed (from their ``status.json``; a job directory without
    one is a job that was killed or crashed before it could write it); (completed, failed)."""
    sweep_dir = Path(sweep_dir)
    records = status_records(sweep_dir)
    records.sort(key=lambda r: (r[1].get("job") is None, r[1].get("job") or 0))
    known = {run_dir for run_dir, _ in records}
    jobs = [d.parent for d in sweep_dir.glob("**/.hydra") if population_dir(d.parent) is None]  # (not members)
    unfinished = sorted(d for d in jobs if d not in known)
    failed = [r for r in records if r[1]["status"] != "completed"]
    total = len(records) + len(unfinished)
    print(
        f"\n[algd] sweep {sweep_dir}: {len(records) - len(failed)} of {total} jobs completed, "
        f"{len(failed) + len(unfinished)} failed"
    )
    common = set.intersection(*(set(r[1]["overrides"]) for r in records)) if records else set()
    for run_dir, rec in records:
        swept = " ".join(o for o in rec["overrides"] if o not in common) or "(no swept keys)"
        final = rec.get("final") or {}
        if "eval/return" in final:
            detail = f"eval return {final['eval/return']:.2f}, cost {final['eval/cost']:.2f}"
            members = member_dirs(run_dir)
            detail += f" (mean of {len(members)} seeds: {run_dir / 'seed<s>'})" if members else ""
        else:
            detail = f"{rec.get('error', '').split('; ')[0]} (details: {run_dir / 'status.json'})"
        print(f"  #{rec.get('job')} {rec['status']:<9} {swept}: {detail}")
    for run_dir in unfinished:
        print(f"  #? {'killed':<9} {run_dir.name}: no status.json (the job's process died; see the launcher's output)")
    return len(records) - len(failed), len(failed) + len(unfinished)


class SweepSummary(Callback):
    """Hydra callback (``hydra.callbacks.sweep_summary``): a summary table at the end of every multirun (``main``
    prints it too when the launcher itself stops the sweep early, e.g. on a killed Ray or joblib worker)."""

    # What ``algd.train.main`` reads once Hydra returns: the sweep folder, whether it was summarised, failed jobs.
    state = {"failed": 0, "dir": None, "summarized": False}

    def on_multirun_start(self, config, **kwargs) -> None:
        SweepSummary.state.update(dir=str(config.hydra.sweep.dir), summarized=False, failed=0)

    def on_multirun_end(self, config, **kwargs) -> None:
        _, failed = summarize_sweep(Path(config.hydra.sweep.dir))
        SweepSummary.state.update(failed=failed, summarized=True)
