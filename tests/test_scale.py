"""Scaling out: multi-process collection (TorchRL MultiSyncCollector / MultiAsyncCollector) and parallel sweeps
through Hydra launchers."""

import pytest
from conftest import overrides, run_dirs, run_train

from test_end_to_end import load_ckpt, scalars


def _train_with_collector(tmp_path, *collector_args):
    """A 300-frame toy run (2 env processes) that must complete with the frame budget met exactly, every counted frame
    in the replay buffer once and the counted cost equal to the buffer's; (run dir, summed replay cost)."""
    proc = run_train(
        "env=toy",
        *collector_args,
        *overrides(
            "collector.workers=2 total_frames=300 warmup_frames=100 batch_size=32 utd=1 eval_every_frames=300 "
            "eval_episodes=1 log_every_frames=100 trainer.threads=1"
        ),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[algd] done: 300 frames, 200 updates" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    dm = load_ckpt(run_dir / "checkpoints" / "last.ckpt")["RLDataModule"]
    replay = dm["replay"]
    assert dm["frames"] == replay["size"] == 300
    replay_cost = float(replay["data"]["next"]["cost"].sum())
    assert abs(dm["collected_cost"] - replay_cost) < 1e-6
    return run_dir, replay_cost


def test_multi_collector_counts_frames_and_costs_once(tmp_path):
    """collector=multi with 2 env processes: the frame budget is met exactly, every frame reaches the replay buffer
    once, per-env episode statistics survive the interleaving, and training completes."""
    run_dir, replay_cost = _train_with_collector(tmp_path, "collector=multi", "collector.frames_per_batch=20")
    tags = scalars(run_dir)
    # 2 envs × 150 steps = 3 full 50-step episodes each: 6 episodes of length 50 whose costs add up to the buffer's
    assert [e.value for e in tags["train/episode_length"]] == [50.0] * 6
    assert abs(sum(e.value for e in tags["train/episode_cost"]) - replay_cost) < 1e-6
    assert [e.step for e in tags["eval/return"]] == [300]


def _sweep_jobs(tmp_path):
    import json

    return sorted((json.loads(f.read_text()) for f in tmp_path.rglob("status.json")), key=lambda r: r["job"])


TOY_JOB = [
    "env=toy",
    "seed=0,1",
    "total_frames=200",
    "warmup_frames=100",
    "batch_size=32",
    "utd=1",
    "eval_every_frames=200",
    "eval_episodes=1",
    "log_every_frames=100",
]


def test_joblib_sweep_runs_jobs_in_parallel_processes(tmp_path):
    proc = run_train(*overrides("-m hydra/launcher=joblib hydra.launcher.n_jobs=2"), *TOY_JOB, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 of 2 jobs completed, 0 failed" in proc.stdout
    a, b = _sweep_jobs(tmp_path)
    assert a["status"] == b["status"] == "completed" and a["pid"] != b["pid"]
    assert max(a["started"], b["started"]) < min(a["ended"], b["ended"])  # their run times overlap
    for run_dir in run_dirs(tmp_path):
        assert [e.step for e in scalars(run_dir)["eval/return"]] == [200]


def test_submitit_local_sweep_completes(tmp_path):
    proc = run_train("-m", "hydra/launcher=submitit_local", *TOY_JOB, "trainer.threads=1", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 of 2 jobs completed, 0 failed" in proc.stdout
    assert [r["status"] for r in _sweep_jobs(tmp_path)] == ["completed", "completed"]
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2 and all([e.step for e in scalars(d)["eval/return"]] == [200] for d in dirs)
    assert all(load_ckpt(d / "checkpoints" / "last.ckpt")["RLDataModule"]["frames"] == 200 for d in dirs)


def test_async_collector_overlaps_and_counts_frames_once(tmp_path):
    """collector=async (MultiAsyncCollector, 2 env processes collecting while the learner trains): the frame budget is
    met exactly, every counted frame is in the replay buffer once, and episodes are assembled per trajectory although
    batches of the two envs interleave (every finished episode has the toy env's 50 steps)."""
    run_dir, replay_cost = _train_with_collector(tmp_path, "collector=async", "collector.frames_per_batch=10")
    lengths = [e.value for e in scalars(run_dir)["train/episode_length"]]
    # at most 49 unfinished frames per worker: at least 300 - 98 frames sit in finished episodes, so >= 5 of them
    assert len(lengths) >= 5 and set(lengths) == {50.0}
    assert sum(e.value for e in scalars(run_dir)["train/episode_cost"]) <= replay_cost + 1e-6


def test_acting_copy_is_refreshed_every_sync_every_frames():
    """The collector acts with a CPU copy of the actor, refreshed every ``collector.sync_every_frames`` frames (here
    every 3rd collection of 10 frames), never in between."""
    import torch

    from algd.actors.gaussian import GaussianActor
    from algd.data.module import RLDataModule
    from algd.envs.toy import ToyFactory

    dm = RLDataModule(
        ToyFactory(),
        seed=0,
        total_frames=100,
        warmup_frames=50,
        utd=1,
        batch_size=8,
        frames_per_batch=10,
        sync_every_frames=30,
    )
    actor = GaussianActor(obs_dim=6, act_dim=2, action_low=-torch.ones(2), action_high=torch.ones(2))
    dm.set_policy(actor)
    synced = []  # (frame count, acting copy == actor) seen after each collection
    try:
        for _ in dm.batches():
            same = all(torch.equal(a, b) for a, b in zip(actor.parameters(), dm.acting_actor.parameters()))
            if not synced or synced[-1][0] != dm.frames:
                synced.append((dm.frames, same))
            with torch.no_grad():  # a stand-in for the learner's update
                next(actor.parameters()).add_(0.01)
    finally:
        dm.close()
    assert dm.syncs == 4  # before the collections starting at frames 0, 30, 60, 90
    assert [f for f, same in synced if same] == [10, 40, 70, 100]


# hydra/launcher=ray with no address starts a local Ray instance; 2 CPUs and no dashboard keep its start-up short
RAY = ["hydra/launcher=ray", "+hydra.launcher.ray.init.num_cpus=2", "+hydra.launcher.ray.init.include_dashboard=false"]


@pytest.mark.slow  # a local Ray instance's start-up is most of its ~60 s; joblib and submitit sweeps: make test
def test_ray_sweep_completes_on_a_local_ray_instance(tmp_path):
    """Both jobs run in Ray worker processes with 1 torch thread each (trainer.threads defaults to the CPUs Ray
    reserves per job), write complete logs and status.json, and the sweep ends with algd's summary."""
    proc = run_train("-m", *RAY, *TOY_JOB, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Started a local Ray instance" in proc.stdout + proc.stderr
    assert "2 of 2 jobs completed, 0 failed" in proc.stdout
    a, b = _sweep_jobs(tmp_path)
    assert a["status"] == b["status"] == "completed" and a["pid"] != b["pid"]
    assert a["threads"] == b["threads"] == 1
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 2 and all([e.step for e in scalars(d)["eval/return"]] == [200] for d in dirs)
    assert all(load_ckpt(d / "checkpoints" / "last.ckpt")["RLDataModule"]["frames"] == 200 for d in dirs)


@pytest.mark.slow  # the failing-job path is covered for joblib in make test; Ray adds ~17 s
def test_ray_sweep_with_a_failing_job_ends_with_the_summary(tmp_path):
    job = ["seed=0" if a == "seed=0,1" else "total_frames=200,50" if a == "total_frames=200" else a for a in TOY_JOB]
    proc = run_train("-m", *RAY, *job, "trainer.threads=1", tmp_path=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 jobs completed, 1 failed" in proc.stdout, proc.stdout[-2000:]
    assert "#1 failed    total_frames=50: invalid warmup_frames=100: must be < total_frames (50)" in proc.stdout
    assert [r["status"] for r in _sweep_jobs(tmp_path)] == ["completed", "failed"]
    (good,) = run_dirs(tmp_path)
    assert [e.step for e in scalars(good)["eval/return"]] == [200]


def test_sweep_summary_counts_a_job_that_died_without_status(tmp_path, capsys):
    """A job whose process was killed leaves a job dir without status.json: the summary counts it as failed (main
    prints this summary too when the launcher stops the sweep, e.g. after a Ray or joblib worker died)."""
    import json

    from algd.launch.sweep import summarize_sweep

    for name in ["seed=0", "seed=1"]:
        (tmp_path / name / ".hydra").mkdir(parents=True)
    (tmp_path / "seed=0" / "status.json").write_text(
        json.dumps(
            {"status": "completed", "job": 0, "overrides": ["seed=0"], "final": {"eval/return": 1.0, "eval/cost": 0.0}}
        )
    )
    assert summarize_sweep(tmp_path) == (1, 1)
    out = capsys.readouterr().out
    assert "1 of 2 jobs completed, 1 failed" in out and "killed    seed=1: no status.json" in out


def test_missing_launcher_plugin_names_the_extra(monkeypatch):
    import importlib.util

    import pytest

    from algd.errors import ConfigError
    from algd.launch.argv import check_launcher

    check_launcher(["-m", "hydra/launcher=ray", "hydra/launcher=joblib"])  # installed by the dev extra
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r"hydra/launcher=ray needs the 'ray' extra: pip install -e '.\[ray\]'"):
        check_launcher(["-m", "hydra/launcher=ray"])
    check_launcher(["hydra/launcher=basic"])
