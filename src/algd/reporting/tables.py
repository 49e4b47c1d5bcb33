"""The report of a sweep: plots (mean and 95 % bootstrap interval across seeds) and ``report.md``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from algd.reporting.runs import CURVES, H_LINE, ONE_LINE, Run, runs_in
from algd.reporting.stats import IQM_MIN_SEEDS, aggregate, align


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
        ax.fill_between(
            frames, [s["lo"] for s in stats], [s["hi"] for s in stats], color=line.get_color(), alpha=0.2, linewidth=0
        )
    if tag == "eval/cost":
        for limit in sorted({r.cost_limit for rs in groups.values() for r in rs if r.cost_limit is not None}):
            ax.axhline(limit, color="k", linestyle="--", linewidth=1, label=f"cost limit {limit:g}")
    if tag in H_LINE:
        for h in sorted({round(r.h, 4) for rs in groups.values() for r in rs if r.h is not None}):
            ax.axhline(h, color="k", linestyle="--", linewidth=1, label=f"h = {h:g}")
    if tag in ONE_LINE:
        ax.axhline(1.0, color="k", linestyle=":", linewidth=1)
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
    return f"{s['mean']:.2f} [{s['lo']:.2f}, {s['hi']:.2f}]" + (
        f" (IQM {s['iqm']:.2f})" if s["iqm"] == s["iqm"] else ""
    )


def _reached(frames: list[float]) -> str:
    """``qc_reached_h`` of some runs as a cell: how many reached h, and at which frames (never: NaN)."""
    if not frames:
        return "-"
    hit = sorted(int(f) for f in frames if not np.isnan(f))
    if len(frames) == 1:
        return str(hit[0]) if hit else "never"
    return f"{len(hit)} of {len(frames)}" + (f" ({', '.join(map(str, hit))})" if hit else "")


def report(sweep: Path, out: Path | None = None) -> Path:
    """Write the plots and ``report.md`` of the runs under ``sweep``; returns the output folder."""
    sweep = Path(sweep)
    runs = runs_in(sweep)
    out = Path(out) if out else sweep / "report"
    out.mkdir(parents=True, exist_ok=True)
    common = set.intersection(*(set(r.config) for r in runs))
    usable = [r for r in runs if r.status != "failed" and len(r.curves.get("eval/return", ())) > 0]
    groups: dict[str, list[Run]] = {}
    for r in sorted(usable, key=lambda r: r.config):
        groups.setdefault(label(r.config, common), []).append(r)

    plots = [plot(groups, tag, out) for tag in CURVES if any(tag in r.curves for rs in groups.values() for r in rs)]
    counts = {s: sum(r.status == s for r in runs) for s in ("completed", "unfinished", "failed")}
    lines = [
        f"# Report: {sweep}",
        "",
        f"{len(runs)} runs: {counts['completed']} completed, {counts['unfinished']} unfinished (running or "
        f"killed; counted with the points they have), {counts['failed']} failed (skipped).",
        f"Common overrides: `{' '.join(sorted(common)) or '-'}`.",
        "",
        "Final = the last evaluation of each run (violation: the last logged value); mean [95 % bootstrap "
        f"interval] across seeds, IQM where ≥ {IQM_MIN_SEEDS} seeds. Above the limit: seeds whose final eval cost "
        "exceeds the cost limit. Mean violation: mean[Q̂c − h]₊ averaged over the run's logged points. Training cost: "
        "the summed cost of every training episode (warm-up included), the cost paid while learning. Q̂c vs "
        "realised: the last evaluation's mean Q̂c along its episodes and the realised discounted cost-to-go "
        "(calibration/*, where the episodes are long enough for the discount). Q̂c ≥ h: the seeds whose λ's Q̂c "
        "(`lagrange/qc_hat`, replay actions) reached h, and the first frame at which each did. Derived plots "
        "(`algd.reporting.runs.derived`): qc_action_gap, the action gap δ = Q̂c at the replay's actions minus Q̂c at "
        "the policy's (same states) over the replay cost per step c̄, and qc_level, the level (c̄ − γc·δ)/(1 − γc) "
        "that the Bellman target moves the cost critic's replay mean towards (c̄/(1 − γc) when δ = 0).",
        "",
        "| config | seeds | frames | final return | final cost | above the limit | final violation | mean violation "
        "| training cost | Q̂c vs realised | Q̂c ≥ h | cost limit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rs in groups.items():
        measured = [r.measures() for r in rs]

        def cell(key: str, measured=measured) -> str:
            values = [m[key] for m in measured if key in m]
            return _cell(aggregate(values)) if values else "-"

        above = [m["above"] for m in measured if "above" in m]
        frames = sorted({int(r.curves["eval/return"][-1, 0]) for r in rs})
        span = f"{frames[0]}" if len(frames) == 1 else f"{frames[0]}–{frames[-1]}"
        limits = ",".join(sorted({f"{r.cost_limit:g}" for r in rs if r.cost_limit is not None})) or "-"
        cells = [
            cell("return"),
            cell("cost"),
            f"{int(sum(above))} of {len(above)}" if above else "-",
            cell("violation"),
            cell("mean_violation"),
            cell("train_cost"),
            f"{cell('cost_q')} vs {cell('cost_to_go')}" if any("cost_q" in m for m in measured) else "-",
            _reached([m["qc_reached_h"] for m in measured if "qc_reached_h" in m]),
        ]
        lines.append(f"| {name} | {len(rs)} | {span} | {' | '.join(cells)} | {limits} |")
    lines += [
        "",
        "## Runs",
        "",
        "| run | status | seed | last eval frame | return | cost | violation | mean violation | training cost "
        "| Q̂c vs realised | Q̂c ≥ h from frame |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        m = r.measures()
        frame = f"{int(r.curves['eval/return'][-1, 0])}" if len(r.curves.get("eval/return", ())) else "-"
        vals = [f"{m[k]:.2f}" if k in m else "-" for k in ("return", "cost", "violation", "mean_violation")]
        vals.append(f"{m['train_cost']:.0f}" if "train_cost" in m else "-")
        vals.append(f"{m['cost_q']:.2f} vs {m['cost_to_go']:.2f}" if "cost_q" in m else "-")
        vals.append(_reached([m["qc_reached_h"]]) if "qc_reached_h" in m else "-")
        status = f"failed: {r.error.split('; ')[0]}" if r.status == "failed" else r.status
        lines.append(f"| {label(r.config, common)} | {status} | {r.seed} | {frame} | {' | '.join(vals)} |")
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return out
