"""Velocity tasks (env=Hopper|HalfCheetah|Ant|Humanoid|Walker2d|Swimmer): speed cost, discounted limits and evaluation
cost, truncated observations, both protocols end to end."""

import pytest
import torch
from conftest import overrides, run_dirs, run_train
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from tensordict import TensorDict

from algd.callbacks.evaluation import evaluate
from algd.envs import episode_cost
from algd.envs.velocity import SpeedCost
from algd.errors import ConfigError
from algd.launch.argv import rewrite_argv
from algd.launch.config import CONFIG_DIR
from algd.learner.constraint import per_step_cost_target
from test_end_to_end import scalars

PAPER_LIMITS = {
    "Ant": 103.115,
    "HalfCheetah": 151.989,
    "Hopper": 82.748,
    "Humanoid": 20.140,
    "Walker2d": 81.886,
    "Swimmer": 24.516,
}


def factory(name: str, protocol: str = "paper", *overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["paths.output_dir=/tmp/algd-unused", f"env={name}", f"protocol={protocol}", *overrides]
        )
    return instantiate(cfg.env, _convert_="all")


# ------------------------------------------------------------------------------------------- configs (no MuJoCo)
@pytest.mark.parametrize("name", sorted(PAPER_LIMITS))
def test_protocols_pick_env_cost_and_limit(name):
    paper, standard = factory(name, "paper"), factory(name, "standard")
    assert (paper.id, paper.info.cost_limit, paper.info.eval_cost_discount) == (f"{name}-v4", PAPER_LIMITS[name], 0.99)
    assert (standard.id, standard.info.cost_limit, standard.info.eval_cost_discount) == (
        f"Safety{name}Velocity-v1",
        25.0,
        None,
    )
    for f in (paper, standard):  # a fall ends reward and cost bootstrapping; episodes up to 1000 steps
        assert f.info.cost_done_mask and f.info.episode_length == 1000
    assert paper.planar == (name in ("Ant", "Humanoid", "Swimmer"))
    assert factory(name, "paper", "cost_gamma=0.95").info.eval_cost_discount == 0.95
    assert factory(name, "paper", "env.cost_limit=50").info.cost_limit == 50.0


def test_safety_gym_velocity_id_points_to_the_standard_protocol():
    with pytest.raises(ConfigError, match="use env=Hopper protocol=standard"):
        rewrite_argv(["env=SafetyHopperVelocity-v1"])


# ----------------------------------------------------------------------------------------------- h and eval cost
def test_h_for_a_discounted_limit_is_the_limit():
    """Q̂c estimates a discounted cost-to-go, so a limit D on the discounted episode cost is already in Q units."""
    assert per_step_cost_target(82.748, 0.99, 1000, discounted=True) == 82.748
    assert per_step_cost_target(82.748, 0.99, 100, discounted=True) == 82.748  # the episode length plays no part
    # an undiscounted limit d: spread over T steps and discounted; the γ → 1 limit of the formula is d itself
    assert per_step_cost_target(25.0, 0.99, 1000) == pytest.approx(25.0 * (1 - 0.99**1000) / (0.01 * 1000))
    assert per_step_cost_target(25.0, 1.0, 1000) == 25.0
    assert per_step_cost_target(25.0, 1 - 1e-9, 1000) == pytest.approx(25.0, rel=1e-5)
    # h is the discounted cost of the constant per-step cost d/T kept up for T steps
    d, gamma, T = 10.0, 0.99, 400
    assert per_step_cost_target(d, gamma, T) == pytest.approx(episode_cost(torch.full((T,), d / T), gamma))


class _Rollouts:
    """A stand-in env whose deterministic episodes have the given per-step costs."""

    def __init__(self, *episodes):
        self.episodes = list(episodes)

    def rollout(self, max_steps, policy, break_when_any_done=True):
        costs = torch.tensor(self.episodes.pop(0))
        return TensorDict({"next": {"reward": torch.ones(len(costs), 1), "cost": costs}}, [len(costs)])


def test_evaluate_discounts_the_cost_on_a_synthetic_rollout():
    episodes = ([1.0, 2.0, 3.0], [4.0, 0.0])
    discounted = [1 + 0.5 * 2 + 0.25 * 3, 4.0]  # Σ_t γ^t c_t from t = 0, γ = 0.5
    out = evaluate(None, _Rollouts(*episodes), episodes=2, max_steps=10, cost_discount=0.5)
    assert out["eval/cost"] == pytest.approx(sum(discounted) / 2)
    assert out["eval/cost_std"] == pytest.approx(abs(discounted[0] - discounted[1]) / 2)
    assert out["eval/cost_undiscounted"] == pytest.approx((6.0 + 4.0) / 2)
    assert (out["eval/return"], out["eval/length"]) == (2.5, 2.5)
    plain = evaluate(None, _Rollouts(*episodes), episodes=2, max_steps=10)
    assert plain["eval/cost"] == pytest.approx(5.0) and "eval/cost_undiscounted" not in plain


# ------------------------------------------------------------------------------------------------ real MuJoCo envs
def record_infos(monkeypatch) -> list[dict]:
    """Collect the info dict of every step the gymnasium env reports under :class:`SpeedCost`."""
    infos, step = [], SpeedCost.step

    def spy(self, action):
        out = step(self, action)
        infos.append(out[-1])
        return out

    monkeypatch.setattr(SpeedCost, "step", spy)
    return infos


@pytest.mark.safety_gym
@pytest.mark.parametrize("name, obs_dim", [("Hopper", 11), ("Ant", 27), ("Humanoid", 45)])
def test_paper_cost_is_the_speed_from_the_info_dict(monkeypatch, name, obs_dim):
    infos = record_infos(monkeypatch)
    env = factory(name, "paper")(seed=0)
    assert env.observation_spec["observation"].shape == (obs_dim,)
    torch.manual_seed(0)
    td = env.rollout(8)  # random actions
    assert td["next", "cost"].dtype == torch.float32 and td["next", "cost"].shape == (8,)
    assert td["next", "observation"].shape == (8, obs_dim)
    vx = torch.tensor([i["x_velocity"] for i in infos])
    speed = torch.hypot(vx, torch.tensor([i["y_velocity"] for i in infos])) if name != "Hopper" else vx.abs()
    assert torch.allclose(td["next", "cost"], speed.float())
    assert speed.min() > 0


@pytest.mark.safety_gym
def test_paper_hopper_fall_terminates():
    """A fall is a true termination (terminated, not truncated), which the learner's cost mask honours."""
    env = factory("Hopper", "paper")(seed=0)
    td = env.rollout(1000, lambda td: td.set("action", torch.ones(3)), break_when_any_done=True)
    assert td.numel() < 1000 and td["next", "terminated"][-1].item() and not td["next", "truncated"][-1].item()


@pytest.mark.safety_gym
@pytest.mark.parametrize(
    "protocol, limit, h",
    [("paper", "82.748 (discounted episode cost, γ = 0.99)", "82.7480"), ("standard", "25 (episode cost)", "15.8492")],
    ids=["paper", "standard"],
)
def test_hopper_trains_on_both_protocols(tmp_path, protocol, limit, h):
    proc = run_train(
        "env=Hopper",
        f"protocol={protocol}",
        *overrides(
            "actor=gaussian total_frames=300 warmup_frames=200 batch_size=32 utd=1 eval_every_frames=300 "
            "eval_episodes=1 env.max_episode_steps=100 trainer.threads=1"
        ),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"env Hopper ({protocol} protocol): episode 100 steps, cost limit {limit}, h = {h};" in proc.stdout
    assert "[algd] done: 300 frames, 100 updates" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    tags = scalars(run_dir)
    assert {"loss/critic", "loss/cost_critic", "eval/return", "eval/cost", "train/episode_cost"} <= set(tags)
    assert ("eval/cost_undiscounted" in tags) == (protocol == "paper")
    if protocol == "paper":  # speed costs are positive: the discounted sum is below the plain one
        assert 0 < tags["eval/cost"][-1].value < tags["eval/cost_undiscounted"][-1].value


@pytest.mark.safety_gym
def test_hopper_calibrates_on_episodes_that_end_in_a_fall(tmp_path):
    """Hopper (paper protocol) through the real entry point: the untrained hopper falls long before γ's horizon, a true
    termination where both critics stop bootstrapping, so the calibration compares every step of the evaluation
    episode (the time-limit rule alone would compare none)."""
    proc = run_train(
        "env=Hopper",
        "protocol=paper",
        *overrides(
            "actor=gaussian total_frames=300 warmup_frames=200 batch_size=32 utd=1 eval_every_frames=300 "
            "eval_episodes=1 trainer.threads=1"
        ),
        tmp_path=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "h = 82.7480" in proc.stdout and "discounted" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    tags = scalars(run_dir)
    length = tags["eval/length"][-1].value
    assert length < 299  # fell: no step's realised sum would be complete under the time-limit rule
    assert tags["calibration/cost_steps"][-1].value == length and tags["calibration/reward_steps"][-1].value == length
    assert {"eval/cost_undiscounted", "calibration/cost_ratio", "calibration/reward_error"} <= set(tags)
    stops = tags["replay/cost_stops"][-1].value  # the falls among the sampled transitions: some, far from all
    assert 0 < stops < 0.5
