"""``make reproduce``: the paper's study for one task (algd.reproduce), at a tiny budget on the toy task."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, wait_until

from algd import reproduce

TINY = [
    "total_frames=300",
    "warmup_frames=100",
    "utd=1",
    "batch_size=32",
    "eval_every_frames=150",
    "eval_episodes=1",
    "log_every_frames=100",
    "trainer.threads=1",
]


def study(out, *extra):
    cmd = [sys.executable, "-m", "algd.reproduce", "toy", "--seeds", "2", "--methods", "algd,sac_lag"]
    return subprocess.run(
        [*cmd, "--out", str(out), *extra, *TINY], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_the_task_is_its_paper_preset():
    assert reproduce.task_overrides("PointButton") == ["env=PointButton", "protocol=paper", "total_frames=100000"]
    assert reproduce.task_overrides("Hopper") == ["env=Hopper", "protocol=paper", "total_frames=150000"]
    cfg = reproduce.method_config(["experiment=algd", *reproduce.task_overrides("PointButton"), "seeds=[0,1]"])
    assert reproduce.budget_updates(cfg) == 950_000
    assert reproduce.budget_updates(cfg, frame=50_000) == 500_000 and reproduce.budget_updates(cfg, 2000) == 950_000
    lines = "\n".join(reproduce.published_section("PointButton"))
    assert "| ALGD | paper | 100000 | ≈ 34 | ≈ 1 | 10 |" in lines


def test_the_parity_switches_are_methods_on_request():
    """issue 16's PointButton1 A/B runs through make reproduce METHODS=algd_goal_done,... (not by default)."""
    from omegaconf import OmegaConf

    task = reproduce.task_overrides("PointButton")
    switched = {
        "algd_goal_done": ("model.reward_done_on_goal", True),
        "algd_action_score": ("actor.score_space", "action"),
        "algd_x0_clip": ("actor.x0_clip", 3.0),
    }
    base = reproduce.method_config(reproduce.method_overrides("algd", task, 2, []))
    for method, (key, value) in switched.items():
        cfg = reproduce.method_config(reproduce.method_overrides(method, task, 2, []))
        assert OmegaConf.select(cfg, key) == value != OmegaConf.select(base, key)
        assert cfg.total_frames == base.total_frames == 100_000 and cfg.energy == base.energy
    assert set(reproduce.SWITCHES) == set(switched) and not set(reproduce.SWITCHES) & set(reproduce.METHODS)


@pytest.mark.parametrize(
    "args, message",
    [
        (["Nowhere"], "unknown task 'Nowhere'; valid tasks: Ant, CarButton"),
        (["toy", "--methods", "algd,ppo"], "unknown method ppo; valid methods: algd, algd_reference, plain_energy"),
        (["toy", "--seeds", "1"], "--seeds must be at least 2"),
        ([], "give a task: make reproduce TASK=<task>"),
    ],
)
def test_bad_input_is_one_clear_line(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        reproduce.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_another_study_in_the_same_folder_is_refused(tmp_path, capsys):
    (tmp_path / reproduce.MANIFEST).write_text(  # the earlier manifest format: one seeds/overrides for all methods
        json.dumps({"task": "toy", "seeds": 3, "methods": ["algd", "sac_lag"], "overrides": TINY})
    )
    with pytest.raises(SystemExit):
        reproduce.main(["toy", "--seeds", "2", "--methods", "algd,sac_lag", "--out", str(tmp_path), *TINY])
    err = capsys.readouterr().err
    assert f"{tmp_path / 'algd'} was run with other settings (seeds: 3 there, 2 here)" in err
    with pytest.raises(SystemExit):
        reproduce.main(["PointButton", "--seeds", "3", "--methods", "algd", "--out", str(tmp_path), *TINY])
    assert "holds another study (task: toy there, PointButton here)" in capsys.readouterr().err


def test_methods_join_a_study_with_seeds_of_their_own(tmp_path):
    """One folder, one report: sac_lag with 3 seeds now, cal with 2 later; each keeps its own settings."""
    reproduce.check_manifest(tmp_path, "toy", ["sac_lag"], 3, TINY)
    reproduce.check_manifest(tmp_path, "toy", ["cal"], 2, TINY)
    reproduce.check_manifest(tmp_path, "toy", ["sac_lag"], 3, TINY)  # continuing it: the same settings
    reproduce.check_manifest(tmp_path, "toy", ["sac_lag"], 3, [*TINY, "trainer.threads=2"])  # threads: free
    record = json.loads((tmp_path / reproduce.MANIFEST).read_text())
    study = [o for o in TINY if not o.startswith("trainer.threads=")]
    assert record == {
        "task": "toy",
        "methods": {"sac_lag": {"seeds": 3, "overrides": study}, "cal": {"seeds": 2, "overrides": study}},
    }
    with pytest.raises(reproduce.ConfigError, match="cal was run with other settings \\(seeds: 2 there, 3 here\\)"):
        reproduce.check_manifest(tmp_path, "toy", ["cal"], 3, TINY)


def test_every_invocation_sets_the_threads_of_the_runs_it_starts_or_resumes(monkeypatch):
    """A resumed run replays its own last overrides: a method last run two at a time (1 thread each) and continued
    with JOBS=1 gets this invocation's threads (all the cores), not the 1 it was stopped with."""
    from algd.launch.resume import merge_overrides

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert reproduce.runtime_overrides([], 1) == ["trainer.threads=2"]
    assert reproduce.runtime_overrides([], 2) == ["trainer.threads=1"]
    assert reproduce.runtime_overrides(["trainer.threads=3"], 1) == ["trainer.threads=3"]  # given: kept
    saved = ["experiment=algd", "trainer.threads=1"]  # the run's .hydra/overrides.yaml after a JOBS=2 invocation
    assert merge_overrides(saved, reproduce.runtime_overrides([], 1)) == ["experiment=algd", "trainer.threads=2"]


@pytest.mark.slow
def test_a_tiny_study_runs_reports_and_continues(tmp_path):
    out = tmp_path / "study"
    proc = study(out, "--jobs", "2")  # both methods at once, each writing to its log
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[reproduce] estimate: ≈ " in proc.stdout and "population updates/s" in proc.stdout
    assert "h of wall time with 2 methods at a time" in proc.stdout and "2 methods, 2 at a time" in proc.stdout
    for method in ("algd", "sac_lag"):
        assert f"[{method}] [algd] run dir: {out / method}" in proc.stdout  # its lines, prefixed with its name
        assert "[algd] run dir:" in (out / f"{method}.log").read_text()
    assert "done: 2 of 2 methods completed" in proc.stdout
    for method in ("algd", "sac_lag"):
        assert json.loads((out / method / "status.json").read_text())["status"] == "completed"
        assert all((out / method / f"seed{s}" / "tb").is_dir() for s in (0, 1))  # populations: member runs
    md = (out / "report" / "report.md").read_text()
    assert "| experiment=algd | 2 | 300 |" in md and "| experiment=sac_lag | 2 | 300 |" in md
    assert md.index("## Published numbers") < md.index("## Plots")
    # the same command again: nothing is rerun
    again = study(out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "algd: completed in" in again.stdout and "sac_lag: completed in" in again.stdout
    assert "algd-train" not in again.stdout


@pytest.mark.slow
def test_an_interrupted_study_saves_the_run_and_the_same_command_resumes_it(tmp_path):
    """SIGTERM to the study mid-run reaches the training run, which saves its frame; the study stops (non-zero) and
    the same command resumes that run from its checkpoint to the end."""
    out = tmp_path / "study"
    budget = ["--methods", "sac_lag", "total_frames=1500", "checkpoint_every_frames=300"]
    tiny = [o for o in TINY if not o.startswith("total_frames=")]
    cmd = [sys.executable, "-m", "algd.reproduce", "toy", "--seeds", "2", "--out", str(out), *tiny, *budget]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = out / "sac_lag" / "checkpoints" / "frame_300.ckpt"
        wait_until(first.is_file, proc, 300, "the study's first checkpoint", every=0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0, stdout[-3000:]
    assert "sac_lag was interrupted; run the same command again" in stdout
    status = json.loads((out / "sac_lag" / "status.json").read_text())
    assert status["status"] == "interrupted" and 300 <= status["frame"] < 1500
    resumed = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"sac_lag: resuming {out / 'sac_lag'}" in resumed.stdout
    assert (
        f"at frame {status['frame']}:" in resumed.stdout
    )  # (the training run's own line: resumed from ... at frame N)
    assert json.loads((out / "sac_lag" / "status.json").read_text())["status"] == "completed"
