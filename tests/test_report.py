"""Sweep presets (ablation=<name>) and the across-seed report (algd.report): aggregation maths, a real tiny sweep
through the joblib launcher, and reports of partial sweeps."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, overrides, run_train

from algd.reporting.runs import derived
from algd.reporting.stats import aggregate, align, bootstrap_ci, iqm
from algd.reporting.tables import report

TINY = [
    "total_frames=200",
    "warmup_frames=100",
    "batch_size=32",
    "utd=1",
    "eval_every_frames=100",
    "eval_episodes=1",
    "log_every_frames=100",
    "trainer.threads=1",
]


def test_bootstrap_interval_and_iqm():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    s = aggregate(x)
    assert s["n"] == 5 and s["mean"] == pytest.approx(22.0)
    assert s["lo"] < s["mean"] < s["hi"]
    assert s["iqm"] == pytest.approx(3.0)  # 1 and 100 dropped: mean of 2, 3, 4
    assert iqm(np.arange(1.0, 9.0)) == pytest.approx(4.5)  # 8 values: 2 dropped each side, mean of 3..6
    assert bootstrap_ci(x) == bootstrap_ci(x)  # seeded
    assert np.isnan(aggregate([1.0, 2.0])["iqm"])  # IQM only with >= 5 seeds
    assert bootstrap_ci([7.0]) == (7.0, 7.0)


def test_align_interpolates_inside_each_run_and_stops_shorter_runs():
    a = np.array([[100, 1.0], [200, 3.0], [300, 5.0]])
    b = np.array([[100, 0.0], [150, 1.0]])
    frames, values = align([a, b])
    assert frames.tolist() == [100, 150, 200, 300]
    assert values[0].tolist() == [1.0, 2.0, 3.0, 5.0]
    assert values[1, :2].tolist() == [0.0, 1.0] and np.isnan(values[1, 2:]).all()


def test_run_measures_for_the_tables():
    from pathlib import Path

    from algd.reporting.runs import Run

    curves = {
        "eval/return": np.array([[100, -30.0], [200, -20.0]]),
        "eval/cost": np.array([[100, 9.0], [200, 3.0]]),
        "lagrange/violation": np.array([[50, 0.5], [150, 0.3], [250, 0.1]]),
        "train/episode_cost": np.array([[50, 4.0], [100, 6.0], [150, 1.0]]),
        "calibration/cost_q": np.array([[100, 0.2], [200, 0.4]]),
        "calibration/cost_to_go": np.array([[100, 2.0], [200, 0.5]]),
        "lagrange/qc_hat": np.array([[50, 0.5], [150, 2.5], [250, 1.0]]),
        "lagrange/h": np.array([[50, 2.455], [250, 2.455]]),
    }
    m = Run(Path("r"), ["seed=0"], "completed", cost_limit=2.0, curves=curves).measures()
    assert m == pytest.approx(
        {"return": -20.0, "cost": 3.0, "violation": 0.1, "above": 1.0, "mean_violation": 0.3, "train_cost": 11.0}
        | {"cost_q": 0.4, "cost_to_go": 0.5, "qc_reached_h": 150.0}
    )
    curves["lagrange/qc_hat"][:, 1] = 1.0  # below h throughout
    assert np.isnan(Run(Path("r"), [], "completed", curves=curves).measures()["qc_reached_h"])
    below = Run(Path("r"), [], "completed", cost_limit=5.0, curves={"eval/cost": curves["eval/cost"]}).measures()
    assert below == {"cost": 3.0, "above": 0.0}  # nothing else logged: nothing else measured


def test_derived_cost_critic_level_and_action_gap():
    """δ = q − q_π at the frames all three tags share, δ / c̄, and L = (c̄ − γ·δ) / (1 − γ); frames with a cost-free
    replay (c̄ < 1e-3) are left out, and L needs γ."""
    curves = {
        "lagrange/qc_hat": np.array([[1000, 0.5], [2000, 3.0], [3000, 2.0], [4000, 9.0]]),
        "lagrange/qc_hat_policy": np.array([[1000, 0.5], [2000, 2.9], [3000, 1.8], [4000, 9.9]]),
        "replay/cost": np.array([[1000, 0.0], [2000, 0.2], [3000, 0.1]]),  # no point at 4000: no derived point
    }
    out = derived(curves, cost_gamma=0.99)
    np.testing.assert_allclose(out["derived/qc_action_gap"], [[2000, 0.5], [3000, 2.0]])
    np.testing.assert_allclose(out["derived/qc_level"], [[2000, (0.2 - 0.099) / 0.01], [3000, (0.1 - 0.198) / 0.01]])
    assert out["derived/qc_level"][1, 1] < 0  # a gap above one step's cost: a negative level from costs >= 0
    assert set(derived(curves, cost_gamma=None)) == {"derived/qc_action_gap"}
    assert derived({k: v for k, v in curves.items() if k != "replay/cost"}, 0.99) == {}
    # falls that stop the cost bootstrap (velocity tasks, replay/cost_stops): the effective discount γ·(1 − stops)
    stops = {**curves, "replay/cost_stops": np.array([[2000, 0.01], [3000, 0.5]])}
    level = derived(stops, cost_gamma=0.99)["derived/qc_level"]
    g2, g3 = 0.99 * 0.99, 0.99 * 0.5
    np.testing.assert_allclose(level, [[2000, (0.2 - g2 * 0.1) / (1 - g2)], [3000, (0.1 - g3 * 0.2) / (1 - g3)]])


def test_runs_differing_only_in_seed_or_threads_are_one_configuration():
    """A method resumed with other torch threads (make reproduce JOBS=2) stays in its group of the report."""
    from pathlib import Path

    from algd.reporting.runs import Run

    a = Run(Path("a"), ["experiment=cal", "seeds=[0,1]", "trainer.threads=1"], "completed")
    b = Run(Path("b"), ["experiment=cal", "seed=3", "seeds=[0,1]"], "completed")
    assert a.config == b.config == ("experiment=cal", "seeds=[0,1]")
    assert Run(Path("c"), ["experiment=cal", "trainer.precision=32-true"], "completed").config != a.config
    # a key given twice (make reproduce: the paper preset's budget, then ARGS's) is the later value, as Hydra took it
    twice = Run(Path("d"), ["experiment=cal", "total_frames=100000", "seeds=[0,1]", "total_frames=15000"], "completed")
    assert twice.config == ("experiment=cal", "seeds=[0,1]", "total_frames=15000")


def test_bad_ablation_name_lists_valid_ones(tmp_path):
    proc = run_train(*overrides("-m ablation=nope env=toy"), tmp_path=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: unknown ablation 'nope'; valid ablation names: actor, baselines, energy, ensemble, mc_samples, rho"
    )


@pytest.fixture(scope="module")
def energy_sweep(tmp_path_factory):
    """make ablate ABL=energy ENV=toy SEEDS=2, on a tiny budget: two jobs, each a population of seeds 0 and 1."""
    tmp = tmp_path_factory.mktemp("ablate")
    proc = run_train(
        *overrides("-m ablation=energy env=toy seeds=[0,1] hydra/launcher=joblib hydra.launcher.n_jobs=2"),
        *TINY,
        tmp_path=tmp,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 of 2 jobs completed, 0 failed" in proc.stdout and "(mean of 2 seeds:" in proc.stdout
    (sweep,) = (tmp / "ablations" / "energy" / "toy").iterdir()
    return sweep


# the curves and the learner's diagnostics (the toy task's 50-step episodes are too short for calibration at γ 0.99)
PLOTS = {
    *("return.png", "cost.png", "lambda.png", "violation.png", "qc_hat.png", "qc_hat_policy.png"),
    *("penalty_active.png", "replay_cost.png", "chain_grad_growth.png", "saturation.png", "train_cost.png"),
    *("qc_action_gap.png", "qc_level.png"),  # derived from qc_hat, qc_hat_policy and replay_cost
}


def _config_rows(md: str) -> list[list[str]]:
    table = md.split("## Runs")[0]
    return [
        [c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| energy=")
    ]


def test_ablate_then_report_writes_plots_and_table(energy_sweep):
    names = sorted(p.name for p in energy_sweep.iterdir() if p.is_dir())
    assert len(names) == 2 and all(
        ("energy=augmented" in n or "energy=lagrangian" in n) and "seeds=" in n for n in names
    )
    assert all((energy_sweep / n / f"seed{s}" / "tb").is_dir() for n in names for s in (0, 1))  # member runs
    proc = subprocess.run(
        [sys.executable, "-m", "algd.report", str(energy_sweep)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = energy_sweep / "report"
    assert {p.name for p in out.glob("*.png")} == PLOTS
    rows = _config_rows((out / "report.md").read_text())
    assert [(r[0], r[1], r[2]) for r in rows] == [("energy=augmented", "2", "200"), ("energy=lagrangian", "2", "200")]
    assert all(r[-1] == "2" for r in rows)  # the toy task's cost limit
    assert all(r[5].endswith(" of 2") for r in rows)  # seeds above the limit, out of the population's 2


def test_report_of_partial_sweep_skips_failed_and_keeps_unfinished_runs(energy_sweep, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(energy_sweep, sweep, ignore=shutil.ignore_patterns("report"))
    runs = sorted(p / f"seed{s}" for p in sweep.iterdir() if p.is_dir() for s in (0, 1))  # the populations' members
    failed = next(p for p in runs if "energy=lagrangian" in p.parent.name and p.name == "seed1")
    status = json.loads((failed / "status.json").read_text())
    (failed / "status.json").write_text(json.dumps({**status, "status": "failed", "error": "non-finite loss/actor"}))
    (runs[0] / "status.json").unlink()  # a job still running (or killed)
    out = report(sweep, tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "4 runs: 2 completed, 1 unfinished" in md and "1 failed" in md
    assert [(r[0], r[1]) for r in _config_rows(md)] == [("energy=augmented", "2"), ("energy=lagrangian", "1")]
    assert "failed: non-finite loss/actor" in md
    assert {p.name for p in out.glob("*.png")} == PLOTS


def test_an_archive_reports_like_the_runs(energy_sweep, tmp_path):
    """``algd-report --archive``: configs, status and curves of every run in a few KB each, no checkpoints or event
    files; the report of the archive has the same tables, rows and plots as the report of the runs."""
    arch = tmp_path / "archive"
    cmd = [sys.executable, "-m", "algd.report", str(energy_sweep), "--archive", str(arch)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"archived 4 runs into {arch}" in proc.stdout
    files = [p for p in arch.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix == ".ckpt" or "tfevents" in p.name]
    assert sorted({p.name for p in files}) == ["config.yaml", "curves.csv", "overrides.yaml", "status.json"]
    assert max(p.stat().st_size for p in files if p.name == "curves.csv") < 50_000
    original = report(energy_sweep, tmp_path / "from_runs").joinpath("report.md").read_text()
    archived = report(arch, tmp_path / "from_archive").joinpath("report.md").read_text()
    assert archived.split("\n", 1)[1] == original.split("\n", 1)[1]  # all but the title (the folder's name)
    assert {p.name for p in (tmp_path / "from_archive").glob("*.png")} == PLOTS
    bad = subprocess.run(
        [*cmd[:3], str(tmp_path / "none"), "--archive", str(arch)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "no such folder" in bad.stderr


def test_presets_compose():
    from hydra import compose, initialize_config_dir

    from algd.launch.config import CONFIG_DIR, config_options

    swept = {
        "actor": "actor",
        "energy": "energy",
        "rho": "energy.rho",
        "ensemble": "ensemble",
        "mc_samples": "actor.mc_samples",
        "baselines": "experiment",
    }
    assert config_options("ablation") == sorted(swept)
    budgets = {
        "PointButton": 100000,
        "CarButton": 150000,
        "PointButton2": 200000,
        "PointPush": 200000,
        "CarButton2": 300000,
        "HalfCheetah": 100000,
        "Hopper": 150000,
        "Ant": 200000,
        "Humanoid": 500000,
    }
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        for name, key in swept.items():
            cfg = compose("train", overrides=[f"ablation={name}", "env=toy"], return_hydra_config=True)
            assert list(cfg.hydra.sweeper.params) == [key]
            assert cfg.hydra.sweep.dir.startswith(f"logs/ablations/{name}/toy/")
        for task, frames in budgets.items():
            cfg = compose("train", overrides=[f"experiment=paper_{task}", "paths.output_dir=/tmp/algd-unused"])
            assert (cfg.env.name, cfg.protocol.name, cfg.total_frames) == (task, "paper", frames)


def test_claim_setting_composes_with_the_energy_sweep():
    """make claim's sweep: the energy preset over the claim setting (toy task, scaled reward, γ 0.9, fast targets);
    h follows γ (spec §1: d·(1 − γ^T)/((1 − γ)·T) with d = 2, T = 50)."""
    from hydra import compose, initialize_config_dir

    from algd import build
    from algd.launch.config import CONFIG_DIR

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["ablation=energy", "experiment=claim"], return_hydra_config=True)
    assert list(cfg.hydra.sweeper.params) == ["energy"] and cfg.actor.name == "diffusion"
    assert (cfg.env.name, cfg.env.reward_scale, cfg.gamma, cfg.cost_gamma) == ("toy", 3.0, 0.9, 0.9)
    assert (cfg.tau, cfg.polyak_every, cfg.batch_size, cfg.total_frames, cfg.utd) == (0.02, 1, 64, 6000, 1)
    train_cfg = build.compose(["experiment=claim"])
    env = build.build_env(train_cfg)
    assert env.info.cost_limit == 2.0 and env(0).reward_scale == 3.0
    assert build.cost_target(train_cfg, env.info) == pytest.approx(2 * (1 - 0.9**50) / (0.1 * 50))  # h = 0.398
