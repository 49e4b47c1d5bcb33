"""The paper's study for one task: ``python -m algd.reproduce <task> [--seeds 5] [overrides ...]`` (console script
``algd-reproduce``, ``make reproduce TASK=<task> [SEEDS=5]``).

Runs every method of :data:`METHODS` on the task's paper preset (``experiment=paper_<task>``: its budget and protocol;
UTD 10, the paper's, is the default), each method's seeds as one population (``seeds=[0..S-1]``), on the GPU when
CUDA is visible (``trainer=gpu``, one method at a time), else ``--jobs`` methods at a time (default 2 where the CPU
has ≥ 2 cores, each with its share of the torch threads; :mod:`algd.launch.jobs`). Before it starts it times a few
updates of each method's learner here and prints the estimated hours. Each method runs in ``<out>/<method>/`` (default
``logs/reproduce/<task>``); running the same command again continues the study: completed methods are skipped,
an interrupted one is resumed from its checkpoint, a failed one is left as it is (delete its folder to run it
again); methods may be added to the folder later, each with its own number of seeds. At the end it writes the
report (``make report``'s plots and table) of every method in the folder with the published numbers beside ours
(``data/published.yaml``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from algd.errors import ConfigError
from algd.launch.config import override_key
from algd.launch.jobs import SIGNALS, Job, makespan, run_parallel, threads_per_job

# method -> its overrides (spec §9; issue 18 item 3)
METHODS = {
    "algd": ["experiment=algd"],
    "algd_reference": ["experiment=algd_reference"],
    "plain_energy": ["experiment=algd", "energy=lagrangian"],
    "sac_lag": ["experiment=sac_lag"],
    "cal": ["experiment=cal"],
}
# ALGD with one of the authors' behaviours switched on (issue 16's A/B, docs/parity.md): run on request
# (``--methods algd,algd_goal_done,...``), not part of the default study
SWITCHES = {
    "algd_goal_done": ["experiment=algd", "model.reward_done_on_goal=true"],
    "algd_action_score": ["experiment=algd", "actor.score_space=action"],
    "algd_x0_clip": ["experiment=algd", "actor.x0_clip=3.0"],
}
RUNS = {**METHODS, **SWITCHES}
MANIFEST = "reproduce.json"
RUNTIME_KEYS = ("trainer.threads",)  # overrides that change how fast a run goes, not what it learns: not recorded
PUBLISHED = Path(__file__).resolve().parents[2] / "data" / "published.yaml"
TIMED_UPDATES = 10


def task_overrides(task: str) -> list[str]:
    """The task's paper setting as plain overrides (the paper preset's env, protocol and budget), so that each
    method's own ``experiment=`` preset can be combined with it; ``toy``: the toy task at the default budget."""
    from algd import build
    from algd.launch.config import config_options

    if task == "toy":
        return ["env=toy"]
    presets = sorted(n.removeprefix("paper_") for n in config_options("experiment") if n.startswith("paper_"))
    if task not in presets:
        raise ConfigError(f"unknown task {task!r}; valid tasks: {', '.join([*presets, 'toy'])}")
    cfg = build.compose([f"experiment=paper_{task}"])
    return [f"env={task}", f"protocol={cfg.protocol.name}", f"total_frames={cfg.total_frames}"]


def on_device() -> list[str]:
    import torch

    return ["trainer=gpu"] if torch.cuda.is_available() else []


def method_overrides(method: str, task: list[str], seeds: int, extra: list[str]) -> list[str]:
    return [*RUNS[method], *task, f"seeds=[{','.join(str(s) for s in range(seeds))}]", *on_device(), *extra]


def method_config(overrides: list[str]):
    """The training config of one method's run (its overrides without the population's ``seeds``)."""
    from algd import build

    return build.compose([o for o in overrides if not o.startswith("seeds=")])


def population_updates_per_s(cfg, seeds: int, updates: int = TIMED_UPDATES) -> float:
    """Updates/s of the population's learner (all ``seeds`` members in one update) as training builds it for the
    config ``cfg``, on random batches of the task's sizes: the median of 3 timings of ``updates`` updates."""
    import torch

    from algd import build
    from algd.bench.learner import random_batch
    from algd.bench.timing import median_rate
    from algd.data.collectors import env_specs

    device = build.resolve_device(cfg)
    env = build.build_env(cfg)(0)
    specs = env_specs(env)
    env.close()
    with torch.random.fork_rng(devices=[]):
        learner = build.build_learner(cfg, specs, build.build_env(cfg).info, device, population=seeds)
        learner = learner.to(device.name).standalone()
        sizes = {"batch": int(cfg.batch_size), "obs": specs["obs_dim"], "act": specs["act_dim"]}
        batch = [random_batch(device=device.name, **sizes) for _ in range(seeds)]
        batch = torch.stack(batch) if seeds > 1 else batch[0]
        for _ in range(3):
            learner.update(batch)

        def run():
            for _ in range(updates):
                learner.update(batch)

        return median_rate(run, updates, repeats=3)


def budget_updates(cfg, frame: int = 0) -> int:
    """Updates one member makes from ``frame`` to the end of the run: UTD × (total frames − max(frame, warm-up))."""
    start = max(int(frame), int(cfg.warmup_frames))
    return int(round(float(cfg.utd) * max(0, int(cfg.total_frames) - start)))


def state(run_dir: Path) -> tuple[str, int | None]:
    """(completed | failed | interrupted | new, the frame an interrupted run reached)."""
    from algd.launch.status import read_status

    record = read_status(run_dir) if run_dir.is_dir() else None
    if record is None:
        return ("interrupted" if (run_dir / "checkpoints" / "last.ckpt").is_file() else "new"), None
    status = record["status"]
    return ("completed" if status == "completed" else "failed" if status == "failed" else "interrupted"), record.get(
        "frame"
    )


def study_overrides(overrides: list[str]) -> list[str]:
    """The overrides that make the study what it is: all but :data:`RUNTIME_KEYS`."""
    return [o for o in overrides if override_key(o) not in RUNTIME_KEYS]


def check_manifest(out: Path, task: str, methods: list[str], seeds: int, overrides: list[str]) -> None:
    """Record this study's methods in ``out``'s manifest. One folder holds one task; each method in it keeps the seeds
    and overrides it was started with (to continue it, the same), while methods may be added to the study later
    with seeds of their own (e.g. ``SEEDS=3`` for one method, ``SEEDS=2`` for another), so that one report covers
    them all. ``trainer.threads`` is not part of it (a study may continue with other threads, e.g. ``JOBS=1``).
    Reads the earlier manifest format (one seeds/overrides for every method) too."""
    path = out / MANIFEST
    old = json.loads(path.read_text()) if path.is_file() else {"task": task, "methods": {}}
    if isinstance(old.get("methods"), list):  # the format before methods were recorded one by one
        old["methods"] = {m: {"seeds": old.get("seeds"), "overrides": old.get("overrides")} for m in old["methods"]}
    if old.get("task") != task:
        raise ConfigError(
            f"{out} holds another study (task: {old.get('task')} there, {task} here); give another --out (make "
            "reproduce OUT=...)"
        )
    here = {"seeds": seeds, "overrides": study_overrides(overrides)}
    for method in methods:
        there = old["methods"].get(method)
        if there is not None:  # (a manifest written before the threads were left out of it)
            there = {**there, "overrides": study_overrides(there.get("overrides") or [])}
        diff = [k for k in here if there is not None and there.get(k) != here[k]]
        if diff:
            what = ", ".join(f"{k}: {there[k]} there, {here[k]} here" for k in diff)
            raise ConfigError(
                f"{out / method} was run with other settings ({what}); continue it with the same settings, or give "
                "another --out (make reproduce OUT=...)"
            )
    out.mkdir(parents=True, exist_ok=True)
    record = {"task": task, "methods": {**old["methods"], **{m: here for m in methods}}}
    path.write_text(json.dumps(record, indent=1) + "\n")


def estimate(
    task: list[str],
    methods: list[str],
    seeds: int,
    extra: list[str],
    out: Path,
    jobs: int = 1,
    threads: int | None = None,
) -> float:
    """Time a few updates of each method still to run (with ``threads`` torch threads, as each of ``jobs`` parallel
    runs will have them) and print the estimated hours (learner only); returns the wall hours."""
    import torch

    hours = []
    print(
        f"[reproduce] timing 3 × {TIMED_UPDATES} updates of each method's learner ({seeds} seeds as one population"
        + (f", {threads} thread{'s' if threads > 1 else ''}" if threads else "")
        + ") ..."
    )
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for method in methods:
            overrides = method_overrides(method, task, seeds, extra)
            status, frame = state(out / method)
            if status in ("completed", "failed"):
                print(f"[reproduce]   {method:15s} {status}, not run again")
                continue
            cfg = method_config(overrides)
            rate = population_updates_per_s(cfg, seeds)
            updates, left = budget_updates(cfg), budget_updates(cfg, frame or 0)  # (an interrupted run: what is left)
            hours.append(left / rate / 3600)
            print(
                f"[reproduce]   {method:15s} {rate:7.1f} population updates/s ({rate * seeds:.1f} seed-updates/s): "
                f"{left:,} of {updates:,} updates per seed left, ≈ {hours[-1]:.2f} h"
            )
    finally:
        torch.set_num_threads(before)
    wall = makespan(hours, jobs)
    print(
        f"[reproduce] estimate: ≈ {sum(hours):.2f} h of updates on this machine"
        + (f", ≈ {wall:.2f} h of wall time with {jobs} methods at a time" if jobs > 1 else "")
        + "; collection and evaluation come on top (the whole loop ran 10–30 % slower than its learner in "
        "docs/performance.md)",
        flush=True,
    )
    return wall


def runtime_overrides(runtime: list[str], jobs: int) -> list[str]:
    """This invocation's runtime overrides: the ones given, else ``trainer.threads`` = the cores shared out over
    ``jobs``, even for one job: a resumed run replays its own last overrides, so a study that ran two at a time
    (1 thread each) and continues with ``JOBS=1`` would otherwise keep 1 thread of 2."""
    return runtime or [f"trainer.threads={threads_per_job(jobs)}"]


def default_jobs(pending: int) -> int:
    """Methods run at a time unless ``--jobs`` says: 1 on a GPU (one device for all); on a CPU 2 where it has ≥ 2
    cores (two processes with half the cores each made 1.2–1.4× the updates of one with all of them on 2 cores,
    docs/performance.md), never more than the methods left to run."""
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(2, os.cpu_count() or 1, pending))


def run_forwarding_signals(cmd: list[str]) -> int:
    """Run ``cmd`` and wait for it; SIGINT, SIGTERM and SIGUSR1 sent to this process are passed on to it (a training
    run saves its checkpoint on them and exits), instead of stopping this one first or killing the child."""
    proc = subprocess.Popen(cmd)

    def forward(signum, frame):
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        return proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def method_command(overrides: list[str], run_dir: Path, runtime: list[str]) -> tuple[list[str], str]:
    """The command that starts (or, interrupted, resumes) one method's run, and a line that says which;
    ``runtime``: overrides of this invocation only (e.g. ``trainer.threads``)."""
    if state(run_dir)[0] == "interrupted":
        return [sys.executable, "-m", "algd.train", f"resume={run_dir}", *runtime], f"resuming {run_dir}"
    args = [*overrides, *runtime]
    return [sys.executable, "-m", "algd.train", *args, f"hydra.run.dir={run_dir}"], f"algd-train {' '.join(args)}"


def outcome(run_dir: Path, returncode: int) -> str:
    """completed | failed | interrupted: how a method's run ended."""
    final, _ = state(run_dir)
    return "interrupted" if returncode != 0 and final != "failed" else final


def run_methods(todo: dict[str, list[str]], out: Path, jobs: int, runtime: list[str]) -> dict[str, str]:
    """Run each method (name → its overrides) in ``out/<method>``, ``jobs`` at a time; returns each one's final
    state. Completed and failed methods are not run again. One at a time, a run writes to this terminal; several
    at a time, each writes to ``out/<method>.log`` and its lines appear here prefixed with its name."""
    results: dict[str, str] = {}
    pending = []
    for method in todo:
        status, _ = state(out / method)
        if status in ("completed", "failed"):
            print(
                f"[reproduce] {method}: {status} in {out / method}, not run again"
                + (" (delete the folder to run it again)" if status == "failed" else "")
            )
            results[method] = status
        else:
            pending.append(method)
    if jobs <= 1:
        for method in pending:
            cmd, what = method_command(todo[method], out / method, runtime)
            print(f"[reproduce] {method}: {what}", flush=True)
            results[method] = outcome(out / method, run_forwarding_signals(cmd))
            if results[method] == "interrupted":
                break
        return results

    def start(job: Job) -> None:
        print(f"[reproduce] {job.name}: {job.note} (its output: {job.log})", flush=True)

    def end(job: Job) -> bool:
        results[job.name] = outcome(out / job.name, job.returncode)
        print(f"[reproduce] {job.name}: {results[job.name]}", flush=True)
        return results[job.name] != "interrupted"

    queue = []
    for method in pending:
        cmd, what = method_command(todo[method], out / method, runtime)
        queue.append(Job(method, cmd, out / f"{method}.log", note=what))
    print(f"[reproduce] {len(queue)} methods, {jobs} at a time, {', '.join(runtime)}")
    run_parallel(queue, jobs, on_start=start, on_end=end)
    return results


def published_section(task: str) -> list[str]:
    """The published numbers for ``task`` (``data/published.yaml``) as report lines."""
    import yaml

    data = yaml.safe_load(PUBLISHED.read_text()) if PUBLISHED.is_file() else {}
    rows = (data.get("tasks") or {}).get(task) or []
    lines = ["", "## Published numbers (not measured here)", ""]
    if not rows:
        return [*lines, f"None recorded for {task} in `data/published.yaml`."]
    lines += [
        f"Source: {data.get('source', '-')}",
        "",
        "| method | protocol | frames | return | cost | cost limit | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r.get(k, "-") for k in ("method", "protocol", "frames", "return", "cost", "cost_limit", "note")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="algd-reproduce", description=__doc__.split("\n\n")[1])
    parser.add_argument("task", nargs="?", help="a task with a paper preset (PointButton, Hopper, ...) or toy")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per method (one population each; default 5)")
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"comma-separated, of {', '.join(METHODS)} (the default: all of them) and the parity switches "
        f"{', '.join(SWITCHES)}",
    )
    parser.add_argument("--out", help="the study's folder (default logs/reproduce/<task>)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="methods run at a time, each with cores ÷ jobs torch threads (default: 2 on a CPU with ≥ 2 cores, "
        "1 on a GPU)",
    )
    parser.add_argument("--estimate-only", action="store_true", help="print the estimate and stop")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every method (e.g. total_frames=...)")
    args = parser.parse_intermixed_args(argv)
    try:
        if not args.task:
            raise ConfigError("give a task: make reproduce TASK=<task> (PointButton, Hopper, ... or toy)")
        methods = [m for m in args.methods.split(",") if m]
        unknown = [m for m in methods if m not in RUNS]
        if unknown or not methods:
            raise ConfigError(f"unknown method {', '.join(unknown) or '(none)'}; valid methods: {', '.join(RUNS)}")
        if args.jobs is not None and args.jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
        if args.seeds < 2:
            raise ConfigError(f"--seeds must be at least 2 (one population per method), got {args.seeds}")
        task = task_overrides(args.task)
        out = Path(args.out or Path("logs") / "reproduce" / args.task)
        # the study's settings (recorded, kept) and this invocation's torch threads (free to change on continuing)
        study = study_overrides(args.overrides)
        runtime = [o for o in args.overrides if o not in study]
        check_manifest(out, args.task, methods, args.seeds, study)
        pending = [m for m in methods if state(out / m)[0] not in ("completed", "failed")]
        jobs = min(args.jobs or default_jobs(len(pending)), max(1, len(pending)))  # (no slot without a method)
        runtime = runtime_overrides(runtime, jobs)
        value = runtime[-1].partition("=")[2]
        threads = int(value) if value.isdigit() else None
        print(f"[reproduce] {args.task}: {', '.join(methods)}; {args.seeds} seeds each; in {out}")
        estimate(task, methods, args.seeds, study, out, jobs, threads)
        if args.estimate_only:
            return
        todo = {m: method_overrides(m, task, args.seeds, study) for m in methods}
        results = run_methods(todo, out, jobs, runtime)
        interrupted = [m for m, s in results.items() if s == "interrupted"]
        if interrupted or len(results) < len(methods):
            raise SystemExit(
                f"[reproduce] {', '.join(interrupted) or 'the study'} was interrupted; run the same command again to "
                "continue the study"
            )
        from algd.reporting.tables import report

        report_dir = report(out)
        md = report_dir / "report.md"
        ours, plots = md.read_text().split("\n## Plots", 1)
        md.write_text(ours.rstrip("\n") + "\n" + "\n".join(published_section(args.task)) + "\n\n## Plots" + plots)
        failed = [m for m, s in results.items() if s == "failed"]
        print(
            f"[reproduce] done: {len(methods) - len(failed)} of {len(methods)} methods completed"
            + (f", failed: {', '.join(failed)}" if failed else "")
            + f"; report: {md}"
        )
        if failed:
            raise SystemExit(1)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.code) from None


if __name__ == "__main__":
    main()
