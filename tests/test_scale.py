"""Scaling out (issue 7, first part): multi-process collection through TorchRL's MultiSyncCollector."""

from conftest import run_dirs, run_train
from test_end_to_end import load_ckpt, scalars


def test_multi_collector_counts_frames_and_costs_once(tmp_path):
    """collector=multi with 2 env processes: the frame budget is met exactly, every frame reaches the replay buffer
    once, per-env episode statistics survive the interleaving, and training completes."""
    proc = run_train("env=toy", "collector=multi", "collector.workers=2", "collector.frames_per_batch=20",
                     "total_frames=300", "warmup_frames=100", "batch_size=32", "utd=1", "eval_every_frames=300",
                     "eval_episodes=1", "log_every_frames=100", "trainer.threads=1", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[algd] done: 300 frames, 200 updates" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    dm = load_ckpt(run_dir / "checkpoints" / "last.ckpt")["RLDataModule"]
    replay = dm["replay"]
    assert dm["frames"] == replay["size"] == 300
    replay_cost = float(replay["data"]["next"]["cost"].sum())
    assert abs(dm["collected_cost"] - replay_cost) < 1e-6
    tags = scalars(run_dir)
    # 2 envs × 150 steps = 3 full 50-step episodes each: 6 episodes of length 50 whose costs add up to the buffer's
    assert [e.value for e in tags["train/episode_length"]] == [50.0] * 6
    assert abs(sum(e.value for e in tags["train/episode_cost"]) - replay_cost) < 1e-6
    assert [e.step for e in tags["eval/return"]] == [300]
