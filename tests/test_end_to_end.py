"""End-to-end through the real Hydra entry point (subprocesses), on the toy env and on real Safety-Gymnasium."""

from pathlib import Path

import pytest
import torch
from conftest import overrides, run_dirs, run_train
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REQUIRED_TAGS = {
    "train/episode_return",
    "train/episode_cost",
    "loss/critic",
    "loss/actor",
    "lagrange/lambda",
    "eval/return",
    "eval/cost",
    "time/fps",
}
TINY = ["utd=1", "batch_size=64", "eval_episodes=1", "log_every_frames=100"]


def scalars(run_dir: Path) -> dict[str, list]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def load_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_toy_end_to_end(tmp_path):
    proc = run_train(
        *overrides("env=toy total_frames=1000 warmup_frames=500 eval_every_frames=500 checkpoint_every_frames=500"),
        *TINY,
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    assert f"run dir: {run_dir}" in proc.stdout and f"tensorboard --logdir {run_dir}" in proc.stdout
    tags = scalars(run_dir)
    assert set(tags) >= REQUIRED_TAGS, REQUIRED_TAGS - set(tags)
    # x-axis is environment frames: eval at 500 and 1000; every episode (50 steps) of 1000 frames logged
    assert [e.step for e in tags["eval/return"]] == [500, 1000]
    assert len(tags["train/episode_return"]) == 1000 // 50
    assert max(e.step for e in tags["loss/critic"]) == 1000
    for tag in ["loss/critic", "time/fps", "eval/return"]:  # no duplicate points at the end of training
        steps = [e.step for e in tags[tag]]
        assert len(steps) == len(set(steps)), (tag, steps)
    ckpt = load_ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert (run_dir / "checkpoints" / "frame_500.ckpt").exists()
    dm_state = ckpt["RLDataModule"]
    assert dm_state["frames"] == 1000 and ckpt["updates"] == 500  # utd 1 × (1000 − 500 warm-up)


def test_hydra_multirun_ablation(tmp_path):
    """actor × energy ablation through Hydra's multirun: all 6 jobs complete, each in a directory named by its
    overrides, each with a final checkpoint and evaluation."""
    proc = run_train(
        *overrides(
            "-m env=toy actor=gaussian,diffusion,diffusion_ve energy=augmented,lagrangian total_frames=250 "
            "warmup_frames=200 eval_every_frames=250"
        ),
        *TINY,
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dirs = run_dirs(tmp_path)
    pairs = {tuple(kv for kv in d.name.split(",") if kv.startswith(("actor=", "energy="))) for d in dirs}
    assert len(dirs) == 6 and pairs == {
        (f"actor={a}", f"energy={e}")
        for a in ["gaussian", "diffusion", "diffusion_ve"]
        for e in ["augmented", "lagrangian"]
    }, [d.name for d in dirs]
    for d in dirs:
        assert "eval/return" in scalars(d)
        assert load_ckpt(d / "checkpoints" / "last.ckpt")["updates"] == 50


@pytest.mark.safety_gym
@pytest.mark.parametrize(
    "protocol, episode, h, actor", [("paper", 400, "2.4551", "gaussian"), ("standard", 1000, "2.4999", "diffusion")]
)
def test_real_safety_gym_point_button(tmp_path, protocol, episode, h, actor):
    proc = run_train(
        "env=PointButton",
        f"protocol={protocol}",
        f"actor={actor}",
        *overrides("total_frames=300 warmup_frames=200 eval_every_frames=300"),
        *TINY,
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"h = {h}" in proc.stdout and f"{protocol} protocol" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    tags = scalars(run_dir)
    assert {"loss/critic", "loss/actor", "lagrange/lambda", "eval/return", "eval/cost", "time/fps"} <= set(tags)
    assert tags["eval/length"][-1].value == episode  # a full, deterministic episode of the protocol's length
    # the critics' calibration along it: the steps whose realised sums miss ≤ 5 % (γ^299 ≤ 0.05 at γ = 0.99)
    assert tags["calibration/cost_steps"][-1].value == episode - 299 + 1
    assert {"calibration/cost_error", "calibration/reward_error", "lagrange/qc_hat_policy"} <= set(tags)
    # the real env resumes too: replay buffer, counters and the env's own RNG come back
    resumed = run_train(f"resume={run_dir}", "total_frames=350", "trainer.threads=1", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at frame 300: 100 updates, replay buffer 300 transitions" in resumed.stdout, resumed.stdout
    assert load_ckpt(run_dir / "checkpoints" / "last.ckpt")["RLDataModule"]["frames"] == 350


def test_unknown_env_fails_with_one_clear_line(tmp_path):
    proc = run_train("env=NoSuchTask", tmp_path=tmp_path, timeout=60)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "unknown env 'NoSuchTask'" in lines[0] and "PointButton" in lines[0] and "toy" in lines[0]


@pytest.mark.slow  # ~80 s: run by `make test-slow` (keeps the default `make test` under 10 minutes with the install)
def test_sac_lag_learns_a_safe_policy_on_toy(tmp_path):
    """A cheap version of the acceptance check: SAC-Lag on the toy task ends under the cost limit (2) with a return
    far above a random policy's (≈ −90: the point barely moves from the start, 2 units from the goal)."""
    proc = run_train(
        *overrides(
            "env=toy experiment=sac_lag seed=0 total_frames=6000 warmup_frames=1000 utd=1 batch_size=128 "
            "eval_every_frames=6000 eval_episodes=5 log_every_frames=1000"
        ),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(tmp_path)
    tags = scalars(run_dir)
    final_return, final_cost = tags["eval/return"][-1].value, tags["eval/cost"][-1].value
    assert final_cost <= 2.0 and final_return > -60.0, (final_return, final_cost)
