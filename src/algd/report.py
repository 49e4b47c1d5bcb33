"""Across-seed report of a sweep: ``python -m algd.report <sweep dir> [--out DIR]`` (console script ``algd-report``,
``make report SWEEP=<dir>``).

Reads the TensorBoard events of every run under the folder, groups runs by config (their overrides minus ``seed``),
aligns the curves on the environment-frame axis and aggregates across seeds: mean with a 95 % bootstrap interval,
and the interquartile mean (IQM) where a config has at least ``IQM_MIN_SEEDS`` seeds. Writes PNG plots (eval return,
eval cost with the cost limit, λ, violation vs frames) and ``report.md`` (final values per config and per run) into
``<sweep>/report/``. Works on partial sweeps: unfinished runs count with the points they have, failed runs
(``status.json``) are listed and skipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CURVES = {  # tag -> (file stem, axis label)
    "eval/return": ("return", "eval return"),
    "eval/cost": ("cost", "eval cost (episode)"),
    "lagrange/lambda": ("lambda", "λ"),
    "lagrange/violation": ("violation", "violation mean[Q̂c − h]₊"),
}
FINAL = ["eval/return", "eval/cost", "lagrange/violation"]  # the table's columns (last point of each run)
IQM_MIN_SEEDS = 5
RESAMPLES = 2000


def read_scalars(tb_dir: Path, tags=CURVES) -> dict[str, np.ndarray]:
    """``{tag: array of (frame, value) rows}`` of a run's TensorBoard folder, for the tags it has."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    have = set(acc.Tags()["scalars"])
    return {t: np.array([(e.step, e.value) for e in acc.Scalars(t)], dtype=float).reshape(-1, 2)
            for t in tags if t in have}


def bootstrap_ci(x, resamples: int = RESAMPLES, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``x`` (seeded, so a report is reproducible)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float(x.mean())
    means = x[np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def iqm(x) -> float:
    """Interquartile mean: the mean after dropping the lowest and highest quarter (⌊n/4⌋ values each side)."""
    x = np.sort(np.asarray(x, dtype=float))
    cut = len(x) // 4
    return float(x[cut:len(x) - cut].mean())


def aggregate(x) -> dict[str, float]:
    """Across-seed statistics of one quantity: n, mean, 95 % bootstrap interval, IQM (NaN under 5 seeds)."""
    x = np.asarray(x, dtype=float)
    lo, hi = bootstrap_ci(x)
    return {"n": len(x), "mean": float(x.mean()), "lo": lo, "hi": hi,
            "iqm": iqm(x) if len(x) >= IQM_MIN_SEEDS else float("nan")}


@dataclass
class Run:
    path: Path
    overrides: list[str]
    status: str                      # completed | failed | unfinished (no status.json: running or killed)
    error: str = ""
    cost_limit: float | None = None
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def config(self) -> tuple[str, ...]:
        return tuple(sorted(o for o in self.overrides if o.partition("=")[0].lstrip("+~") != "seed"))

    @property
    def seed(self) -> str:
        return next((o.partition("=")[2] for o in self.overrides if o.partition("=")[0] == "seed"), "0")


def load_run(path: Path) -> Run:
    import yaml
    from omegaconf import OmegaConf

    overrides = [str(o) for o in yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []]
    status_file = path / "status.json"
    record = json.loads(status_file.read_text()) if status_file.is_file() else {"status": "unfinished"}
    run = Run(path, overrides, record["status"], record.get("error", ""))
    try:
        run.cost_limit = float(OmegaConf.load(path / ".hydra" / "config.yaml").env.cost_limit)
    except Exception:  # noqa: BLE001  (no config yet, or a limit that does not resolve: no line is drawn)
        pass
    if run.status != "failed" and (path / "tb").is_dir():
        run.curves = read_scalars(path / "tb")
    return run


def find_runs(root: Path) -> list[Run]:
    """Every run directory (``.hydra/overrides.yaml``) under ``root``, which may itself be a run."""
    return [load_run(f.parent.parent) for f in sorted(Path(root).glob("**/.hydra/overrides.yaml"))]


def align(curves: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Curves of several seeds on one frame axis (the union of their frames): each run is linearly interpolated
    inside its own frame range and NaN outside it, so a shorter (unfinished) run stops where its data stops.
    Returns (frames, values of shape [runs, frames])."""
    frames = np.unique(np.concatenate([c[:, 0] for c in curves]))
    rows = [np.where((frames >= c[0, 0]) & (frames <= c[-1, 0]), np.interp(frames, c[:, 0], c[:, 1]), np.nan)
            for c in curves]
    return frames, np.array(rows)


def label(config: tuple[str, ...], common: set[str]) -> str:
    return ",".join(o for o in config if o not in common) or "(all runs)"


def plot(groups: dict[str, list[Run]], tag: str, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem, ylabel = CURVES[tag]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, runs in groups.items():
        curves = [r.curves[tag] for r in runs if len(r.curves.get(tag, ())) > 0]
        if not curves:
            continue
        frames, values = align(curves)
        stats = [aggregate(col[~np.isnan(col)]) for col in values.T]
        mean = np.array([s["mean"] for s in stats])
        (line,) = ax.plot(frames, mean, label=f"{name} (n={len(curves)})")
        ax.fill_between(frames, [s["lo"] for s in stats], [s["hi"] for s in stats], color=line.get_color(),
                        alpha=0.2, linewidth=0)
    if tag == "eval/cost":
        for limit in sorted({r.cost_limit for rs in groups.values() for r in rs if r.cost_limit is not None}):
            ax.axhline(limit, color="k", linestyle="--", linewidth=1, label=f"cost limit {limit:g}")
    ax.set_xlabel("environment frames")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{ylabel}: mean and 95 % bootstrap interval across seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"{stem}.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell(s: dict[str, float]) -> str:
    return f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]" + (f" (IQM {s['iqm']:.2f})" if s["iqm"] == s["iqm"] else "")


def report(sweep: Path, out: Path | None = None) -> Path:
    """Write the plots and ``report.md`` of the runs under ``sweep``; returns the output folder."""
    sweep = Path(sweep)
    if not sweep.is_dir():
        _fail(f"{sweep}: no such folder")
    runs = find_runs(sweep)
    if not runs:
        _fail(f"{sweep}: no run directories (.hydra/overrides.yaml) under it")
    out = Path(out) if out else sweep / "report"
    out.mkdir(parents=True, exist_ok=True)
    common = set.intersection(*(set(r.config) for r in runs))
    usable = [r for r in runs if r.status != "failed" and len(r.curves.get("eval/return", ())) > 0]
    groups: dict[str, list[Run]] = {}
    for r in sorted(usable, key=lambda r: r.config):
        groups.setdefault(label(r.config, common), []).append(r)

    plots = [plot(groups, tag, out) for tag in CURVES]
    counts = {s: sum(r.status == s for r in runs) for s in ("completed", "unfinished", "failed")}
    lines = [f"# Report: {sweep}", "",
             f"{len(runs)} runs: {counts['completed']} completed, {counts['unfinished']} unfinished (running or "
             f"killed; counted with the points they have), {counts['failed']} failed (skipped).",
             f"Common overrides: `{' '.join(sorted(common)) or '-'}`.", "",
             "Final = the last evaluation (violation: the last logged value) of each run; mean [95 % bootstrap "
             f"interval] across seeds, IQM where ≥ {IQM_MIN_SEEDS} seeds.", "",
             "| config | seeds | frames | final return | final cost | final violation | cost limit |",
             "|---|---|---|---|---|---|---|"]
    for name, rs in groups.items():
        cells = []
        for tag in FINAL:
            finals = [r.curves[tag][-1, 1] for r in rs if len(r.curves.get(tag, ())) > 0]
            cells.append(_cell(aggregate(finals)) if finals else "-")
        frames = sorted({int(r.curves["eval/return"][-1, 0]) for r in rs})
        span = f"{frames[0]}" if len(frames) == 1 else f"{frames[0]}–{frames[-1]}"
        limits = ",".join(sorted({f"{r.cost_limit:g}" for r in rs if r.cost_limit is not None})) or "-"
        lines.append(f"| {name} | {len(rs)} | {span} | {' | '.join(cells)} | {limits} |")
    lines += ["", "## Runs", "", "| run | status | seed | last eval frame | return | cost | violation |",
              "|---|---|---|---|---|---|---|"]
    for r in runs:
        last = {t: r.curves[t][-1] for t in FINAL if len(r.curves.get(t, ())) > 0}
        frame = f"{int(last['eval/return'][0])}" if "eval/return" in last else "-"
        vals = [f"{last[t][1]:.2f}" if t in last else "-" for t in FINAL]
        status = f"failed: {r.error.split('; ')[0]}" if r.status == "failed" else r.status
        lines.append(f"| {label(r.config, common)} | {status} | {r.seed} | {frame} | {' | '.join(vals)} |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="algd-report", description=__doc__.split("\n\n")[1])
    parser.add_argument("sweep", nargs="?", help="a sweep folder (or any folder of runs, e.g. logs/runs/toy)")
    parser.add_argument("--out", help="output folder (default: <sweep>/report)")
    args = parser.parse_args(argv)
    if not args.sweep:
        _fail("give a sweep folder: make report SWEEP=logs/ablations/<name>/<env>/<time>")
    out = report(Path(args.sweep), args.out)
    print((out / "report.md").read_text().split("\n## Plots")[0])
    print(f"[algd] report: {out / 'report.md'} and {', '.join(p.name for p in sorted(out.glob('*.png')))}")


if __name__ == "__main__":
    main()
