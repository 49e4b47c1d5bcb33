"""The runs under a folder: their overrides, how they ended (``status.json``), cost limit and TensorBoard curves; and
their archives (:func:`archive`), which the report reads like the runs themselves."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from algd.errors import ConfigError
from algd.launch.population import MANIFEST
from algd.launch.status import read_status

CURVES = {  # tag -> (file stem, axis label)
    "eval/return": ("return", "eval return"),
    "eval/cost": ("cost", "eval cost (episode)"),
    "lagrange/lambda": ("lambda", "λ"),
    "lagrange/violation": ("violation", "violation mean[Q̂c − h]₊"),
    "lagrange/qc_hat": ("qc_hat", "Q̂c at replay actions (λ's)"),
    "lagrange/qc_hat_policy": ("qc_hat_policy", "Q̂c at the policy's actions"),
    "lagrange/penalty_active": ("penalty_active", "states with the penalty active"),
    "replay/cost": ("replay_cost", "replay cost per step"),
    "calibration/cost_ratio": ("calibration_cost", "eval Q̂c / realised cost-to-go"),
    "calibration/reward_ratio": ("calibration_reward", "eval min Q / realised return-to-go"),
    "train/chain_grad_growth": ("chain_grad_growth", "chain gradient growth (first step / a⁰)"),
    "train/x0_clipped": ("x0_clipped", "x̂0 components at the clip (actor.x0_clip)"),
    "train/saturation": ("saturation", "action saturation (|a| > 0.99)"),
    "train/episode_cost": ("train_cost", "training episode cost"),
    # derived by the report from the tags above (so runs logged before them have them too): see derived()
    "derived/qc_action_gap": ("qc_action_gap", "Q̂c action gap δ / c̄ (replay − policy actions)"),
    "derived/qc_level": ("qc_level", "Q̂c level (c̄ − γc·δ) / (1 − γc)"),
}
H_LINE = ("lagrange/qc_hat", "lagrange/qc_hat_policy", "derived/qc_level")  # drawn with the runs' h (``lagrange/h``)
ONE_LINE = (  # drawn with y = 1
    "calibration/cost_ratio",
    "calibration/reward_ratio",
    "train/chain_grad_growth",
    "derived/qc_action_gap",
)
MIN_REPLAY_COST = 1e-3  # below it (a cost-free buffer) the derived cost-critic curves are not drawn


def qc_level(cost, gap, cost_gamma: float, stops=0.0):
    """The level L the cost critic's replay mean moves towards, given the replay's cost per step c̄, the action gap δ
    and the fraction of transitions where the cost bootstrap stops (a true termination on the velocity tasks,
    ``replay/cost_stops``; none on Safety-Gym): with the effective discount γ′ = γc·(1 − stops),
    L = (c̄ − γ′·δ) / (1 − γ′). Scalars or arrays alike."""
    discount = cost_gamma * (1 - stops)
    return (cost - discount * gap) / (1 - discount)


def derived(curves: dict[str, np.ndarray], cost_gamma: float | None) -> dict[str, np.ndarray]:
    """Where the cost critic's level is headed, from three logged replay means at each logged frame: Q̂c at the
    replay actions q (``lagrange/qc_hat``), at the policy's own actions at the same states q_π
    (``lagrange/qc_hat_policy``) and the replay cost per step c̄ (``replay/cost``). The critic is trained towards
    c + γc·Q̂c(s', π(s')); over the replay (s' distributed about as s) its mean therefore moves towards the level
    L = (c̄ − γc·δ) / (1 − γc) (:func:`qc_level`), with the action gap δ = q − q_π (how much more the critic charges
    the data's actions than the policy's). With δ = 0, L = c̄ / (1 − γc), the replay's cost rate summed with
    discount; a gap δ kept at every step lowers L by γc·δ / (1 − γc), and δ ≥ c̄ puts L at or below zero although
    no cost is negative. Where the cost bootstrap stops at terminations (``replay/cost_stops``, logged by runs on
    the velocity tasks) γc becomes γc·(1 − stops); a run logged before that tag existed is read as if nothing
    stopped. Returns ``derived/qc_action_gap`` (δ / c̄) and ``derived/qc_level`` (L; needs ``cost_gamma``) at the
    frames where c̄ ≥ MIN_REPLAY_COST."""
    parts = [curves.get(t) for t in ("lagrange/qc_hat", "lagrange/qc_hat_policy", "replay/cost")]
    if any(c is None or not len(c) for c in parts):
        return {}
    frames = np.intersect1d(np.intersect1d(parts[0][:, 0], parts[1][:, 0]), parts[2][:, 0])
    q, q_pi, c = (c[np.searchsorted(c[:, 0], frames), 1] for c in parts)
    keep = c >= MIN_REPLAY_COST
    frames, gap, c = frames[keep], (q - q_pi)[keep], c[keep]
    out = {"derived/qc_action_gap": np.stack([frames, gap / c], axis=1)}
    if cost_gamma is not None:
        stops = curves.get("replay/cost_stops")
        rate = np.interp(frames, stops[:, 0], stops[:, 1]) if stops is not None and len(stops) else 0.0
        out["derived/qc_level"] = np.stack([frames, qc_level(c, gap, cost_gamma, rate)], axis=1)
    return out


CALIBRATION = ("calibration/cost_q", "calibration/cost_to_go")  # read for the table (the last evaluation's)
READ_ONLY = (*CALIBRATION, "lagrange/h", "replay/cost_stops")  # read (and archived), not drawn


def read_scalars(tb_dir: Path, tags=CURVES) -> dict[str, np.ndarray]:
    """``{tag: array of (frame, value) rows}`` of a run's TensorBoard folder, for the tags it has."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    have = set(acc.Tags()["scalars"])
    return {
        t: np.array([(e.step, e.value) for e in acc.Scalars(t)], dtype=float).reshape(-1, 2) for t in tags if t in have
    }


CURVES_FILE = "curves.csv"  # an archived run's curves: tag,frame,value rows (written by archive())
ARCHIVED = (".hydra/overrides.yaml", ".hydra/config.yaml", "status.json")  # copied as they are


def read_curves(path: Path) -> dict[str, np.ndarray]:
    """``{tag: array of (frame, value) rows}`` of an archived run's :data:`CURVES_FILE`."""
    import csv

    rows: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for tag, frame, value in csv.reader(f):
            if tag != "tag":  # the header
                rows.setdefault(tag, []).append((float(frame), float(value)))
    return {t: np.array(r, dtype=float).reshape(-1, 2) for t, r in rows.items()}


def archive(root: Path, dest: Path) -> list[Path]:
    """A compact copy of every run under ``root`` (as :func:`find_runs` finds them) at the same relative path under
    ``dest``: its ``.hydra`` overrides and config, its ``status.json`` and, in :data:`CURVES_FILE`, the scalars the
    report reads from its TensorBoard events, so that ``make report`` on ``dest`` gives the same tables and plots
    without the runs (no checkpoints, no event files: a few KB per run, small enough to keep beside a write-up, and
    arms run in different places can be reported together). Returns the archived run folders."""
    import csv
    import shutil

    root, dest, written = Path(root), Path(dest), []
    for run in runs_in(root):
        target = dest / (run.path.relative_to(root) if run.path != root else Path(run.path.name))
        for name in ARCHIVED:
            if (run.path / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(run.path / name, target / name)
        raw = {k: v for k, v in run.curves.items() if not k.startswith("derived/")}  # derived again when read
        with open(target / CURVES_FILE, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["tag", "frame", "value"])
            for tag, points in sorted(raw.items()):
                out.writerows([tag, int(frame), repr(float(value))] for frame, value in points)
        written.append(target)
    return written


NOT_CONFIG = ("seed", "trainer.threads")


@dataclass
class Run:
    path: Path
    overrides: list[str]
    status: str  # completed | failed | unfinished (no status.json: running or killed)
    error: str = ""
    cost_limit: float | None = None
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def config(self) -> tuple[str, ...]:
        """The run's overrides (one per key) less those that do not change what it learns (its seed, its torch
        threads): runs that differ only there are seeds of one configuration."""
        from algd.launch.config import override_key
        from algd.launch.resume import merge_overrides

        # (a key given twice, e.g. a preset's total_frames and the command line's: the later value, as Hydra took it)
        return tuple(sorted(o for o in merge_overrides(self.overrides, []) if override_key(o) not in NOT_CONFIG))

    @property
    def h(self) -> float | None:
        """The run's cost target h (the last logged ``lagrange/h``), if it logged one."""
        return self.last("lagrange/h")

    def last(self, tag: str) -> float | None:
        """The last logged value of ``tag`` (None if the run has none)."""
        c = self.curves.get(tag)
        return None if c is None or not len(c) else float(c[-1, 1])

    def measures(self) -> dict[str, float]:
        """What the report's tables show of a run, for the tags it logged: ``return``, ``cost``, ``violation`` (the
        last values), ``above`` (1.0 if the last eval cost exceeds the cost limit, else 0.0), ``mean_violation``
        (``lagrange/violation`` averaged over the run's logged points), ``train_cost`` (the summed cost of every
        training episode, warm-up included: the cost paid while learning), ``cost_q`` / ``cost_to_go`` (the
        last evaluation's mean Q̂c along its episodes and the realised discounted cost-to-go, where logged) and
        ``qc_reached_h`` (the first frame at which λ's Q̂c, ``lagrange/qc_hat``, reached h; NaN if it never did)."""
        out = {}
        for key, tag in (("return", "eval/return"), ("cost", "eval/cost"), ("violation", "lagrange/violation")):
            if (v := self.last(tag)) is not None:
                out[key] = v
        if "cost" in out and self.cost_limit is not None:
            out["above"] = float(out["cost"] > self.cost_limit)
        if len(v := self.curves.get("lagrange/violation", ())):
            out["mean_violation"] = float(v[:, 1].mean())
        if len(c := self.curves.get("train/episode_cost", ())):
            out["train_cost"] = float(c[:, 1].sum())
        for key, tag in zip(("cost_q", "cost_to_go"), CALIBRATION):
            if (v := self.last(tag)) is not None:
                out[key] = v
        if len(q := self.curves.get("lagrange/qc_hat", ())) and self.h is not None:
            reached = q[q[:, 1] >= self.h, 0]
            out["qc_reached_h"] = float(reached[0]) if len(reached) else float("nan")
        return out

    @property
    def seed(self) -> str:
        return next((o.partition("=")[2] for o in self.overrides if o.partition("=")[0] == "seed"), "0")


def load_run(path: Path) -> Run:
    import yaml
    from omegaconf import OmegaConf

    overrides = [str(o) for o in yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []]
    record = read_status(path) or {"status": "unfinished"}
    run = Run(path, overrides, record["status"], record.get("error", ""))
    cost_gamma = None
    with contextlib.suppress(Exception):  # no config yet, or a limit that does not resolve: no line is drawn
        cfg = OmegaConf.load(path / ".hydra" / "config.yaml")
        run.cost_limit = float(cfg.env.cost_limit)
        cost_gamma = float(cfg.cost_gamma)
    if run.status != "failed" and (path / "tb").is_dir():
        run.curves = read_scalars(path / "tb", [*CURVES, *READ_ONLY])
    elif run.status != "failed" and (path / CURVES_FILE).is_file():  # an archived run
        run.curves = read_curves(path / CURVES_FILE)
    run.curves.update(derived(run.curves, cost_gamma))
    return run


def runs_in(folder: Path) -> list[Run]:
    """:func:`find_runs` of a folder that must exist and hold runs (a one-line error otherwise)."""
    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: no such folder")
    runs = find_runs(folder)
    if not runs:
        raise ConfigError(f"{folder}: no run directories (.hydra/overrides.yaml) under it")
    return runs


def find_runs(root: Path) -> list[Run]:
    """Every run directory (``.hydra/overrides.yaml``) under ``root``, which may itself be a run; a population
    (``seeds=[...]``) is read as its members' runs."""
    dirs = [f.parent.parent for f in sorted(Path(root).glob("**/.hydra/overrides.yaml"))]
    return [load_run(d) for d in dirs if not (d / MANIFEST).is_file()]
