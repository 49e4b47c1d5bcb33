"""make calibrate (algd.calibrate): the saved critics against the replay's last complete training episodes, for a
population's members and for a single run; the episodes it splits, the sums it compares and its errors."""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_dirs, run_train
from tensordict import TensorDict

from algd.calibrate import calibrate_run, parse_args, replay_of, split_episodes
from algd.callbacks.checkpoint import load_checkpoint
from algd.errors import ConfigError

# γ = γc = 0.9 so that the toy task's 50-step episodes have steps to compare: γ^(50 − t) ≤ 0.05 for t ≤ 21
SMALL = "env=toy warmup_frames=100 batch_size=32 utd=1 eval_episodes=2 trainer.threads=1 gamma=0.9 cost_gamma=0.9"
COMPARED = 50 - math.ceil(math.log(0.05) / math.log(0.9)) + 1  # steps per episode (22)


def test_split_episodes_keeps_the_last_complete_ones():
    done = torch.zeros(8, 1, dtype=torch.bool)
    done[[2, 5]] = True  # episodes 0–2 and 3–5; frames 6–7 are an unfinished episode
    data = TensorDict({"t": torch.arange(8), ("next", "done"): done}, batch_size=[8])
    assert [e["t"].tolist() for e in split_episodes(data, 5)] == [[0, 1, 2], [3, 4, 5]]
    assert [e["t"].tolist() for e in split_episodes(data, 1)] == [[3, 4, 5]]


@pytest.mark.parametrize("argv, message", [([], "no run given"), (["x", "--episodes", "0"], "invalid --episodes 0")])
def test_bad_input_is_one_clear_line(argv, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(argv)


def test_calibrate_a_population_and_its_members(tmp_path, capsys):
    proc = run_train(*SMALL.split(), "seeds=[0,1]", "total_frames=400", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    population = next(d for d in run_dirs(tmp_path) if (d / "seed0").is_dir())
    out = tmp_path / "cal.json"
    results = calibrate_run(parse_args([str(population), "--episodes", "3", "--out", str(out)]))
    assert [r["run"] for r in results] == [str(population / "seed0"), str(population / "seed1")]
    assert json.loads(out.read_text()) == results
    printed = capsys.readouterr().out
    assert "Q̂c vs realised discounted cost-to-go" in printed and "action gap δ" in printed
    replay = replay_of(load_checkpoint(population / "checkpoints" / "last.ckpt"), 1)
    episodes = split_episodes(replay, 3)
    for r in results:
        assert r["frame"] == 400 and r["episodes"] == 3 and r["steps"] == 150
        assert r["cost_steps"] == r["reward_steps"] == 3 * COMPARED
        assert r["level"] == pytest.approx((r["cost_per_step"] - 0.9 * r["gap"]) / (1 - 0.9))
        assert r["gap"] == pytest.approx(r["qc_data"] - r["qc_policy"])
    # member 1's realised sums, by hand from its replay
    to_go = []
    for td in episodes:
        cost = td["next", "cost"].reshape(-1).tolist()
        to_go += [sum(0.9**j * c for j, c in enumerate(cost[t:])) for t in range(COMPARED)]
    assert results[1]["cost_to_go"] == pytest.approx(sum(to_go) / len(to_go), rel=1e-5)
    cost = torch.cat([td["next", "cost"].reshape(-1) for td in episodes]).float().mean().item()
    assert results[1]["cost_per_step"] == pytest.approx(cost)
    # one member alone gives the same numbers as in its population's call (the policy's draws are seeded)
    (member,) = calibrate_run(parse_args([str(population / "seed1"), "--episodes", "3"]))
    assert member == results[1]


@pytest.mark.slow  # ≈ 15 s; the population test covers the numbers in make test
def test_calibrate_a_single_run_from_the_command_line(tmp_path):
    proc = run_train(*SMALL.split(), "total_frames=300", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    cmd = [sys.executable, "-m", "algd.calibrate", str(run_dir), "--episodes", "2"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"[algd] {run_dir} (frame 300): its last 2 training episodes (100 steps)" in done.stdout
    assert f"({2 * COMPARED} steps)" in done.stdout
    bad = subprocess.run([*cmd[:3], str(tmp_path / "none")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "no such run directory" in bad.stderr
