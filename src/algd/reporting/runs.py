"""The runs under a folder: their overrides, how they ended (``status.json``), cost limit and TensorBoard curves."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

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
    "train/saturation": ("saturation", "action saturation (|a| > 0.99)"),
}
H_LINE = ("lagrange/qc_hat", "lagrange/qc_hat_policy")  # drawn with the runs' h (``lagrange/h``)
ONE_LINE = ("calibration/cost_ratio", "calibration/reward_ratio", "train/chain_grad_growth")  # drawn with y = 1
FINAL = ["eval/return", "eval/cost", "lagrange/violation"]  # the table's columns (last point of each run)


def read_scalars(tb_dir: Path, tags=CURVES) -> dict[str, np.ndarray]:
    """``{tag: array of (frame, value) rows}`` of a run's TensorBoard folder, for the tags it has."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir), size_guidance={"scalars": 0})
    acc.Reload()
    have = set(acc.Tags()["scalars"])
    return {
        t: np.array([(e.step, e.value) for e in acc.Scalars(t)], dtype=float).reshape(-1, 2) for t in tags if t in have
    }


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
        return tuple(sorted(o for o in self.overrides if o.partition("=")[0].lstrip("+~") != "seed"))

    @property
    def h(self) -> float | None:
        """The run's cost target h (the last logged ``lagrange/h``), if it logged one."""
        h = self.curves.get("lagrange/h")
        return None if h is None or not len(h) else float(h[-1, 1])

    @property
    def seed(self) -> str:
        return next((o.partition("=")[2] for o in self.overrides if o.partition("=")[0] == "seed"), "0")


def load_run(path: Path) -> Run:
    import yaml
    from omegaconf import OmegaConf

    overrides = [str(o) for o in yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []]
    record = read_status(path) or {"status": "unfinished"}
    run = Run(path, overrides, record["status"], record.get("error", ""))
    with contextlib.suppress(Exception):  # no config yet, or a limit that does not resolve: no line is drawn
        run.cost_limit = float(OmegaConf.load(path / ".hydra" / "config.yaml").env.cost_limit)
    if run.status != "failed" and (path / "tb").is_dir():
        run.curves = read_scalars(path / "tb", [*CURVES, "lagrange/h"])
    return run


def find_runs(root: Path) -> list[Run]:
    """Every run directory (``.hydra/overrides.yaml``) under ``root``, which may itself be a run; a population
    (``seeds=[...]``) is read as its members' runs."""
    dirs = [f.parent.parent for f in sorted(Path(root).glob("**/.hydra/overrides.yaml"))]
    return [load_run(d) for d in dirs if not (d / MANIFEST).is_file()]
