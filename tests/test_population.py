"""Populations (algd.learner.population): S learners in one module, each making exactly the update it would make
alone. Member s of a population is given the weights of a single learner, the same batch and the same random
draws; after two updates (Adam moments and a Polyak step included) its losses, metrics, parameters and targets
equal the single learner's to float32 rounding (the batched matmuls sum in another order)."""

import subprocess
import sys

import pytest
import torch
from conftest import ROOT, patched_draws, run_dirs, run_train

from algd import build
from algd.bench.learner import random_batch
from algd.callbacks.checkpoint import load_checkpoint, load_weights
from algd.data.collectors import env_specs
from algd.launch.status import read_status
from algd.learner.population import member_views
from algd.reporting.runs import find_runs
from test_end_to_end import scalars

S, B, OBS, ACT = 3, 16, 6, 2
RTOL = 1e-5


def learner(actor: str, extra: list[str], population: int, seed: int):
    hidden = "[32,32]" if actor == "gaussian" else "[32,32,32]"
    cfg = build.compose(
        [
            "env=toy",
            f"actor={actor}",
            *extra,
            "critic.hidden=[32,32]",
            "critic.cost_hidden=[32,32]",
            f"actor.hidden={hidden}",
            "trainer.accelerator=cpu",
            "trainer.precision=32-true",
        ]
    )
    specs = {"obs_dim": OBS, "act_dim": ACT, "action_low": -torch.ones(ACT), "action_high": torch.ones(ACT)}
    torch.manual_seed(seed)
    info = build.build_env(cfg).info
    return build.build_learner(cfg, specs, info, build.resolve_device(cfg), population=population).standalone()


def batch(seed: int):
    return random_batch(B, obs=OBS, act=ACT, generator=torch.Generator().manual_seed(seed), events=True)


def member_draw(value: torch.Tensor, shape: tuple, s: int) -> torch.Tensor:
    """Learner s's part of a population draw: the draw without its learner axis (the one of size S whose removal
    leaves the single learner's shape)."""
    axes = [i for i in range(value.dim()) if value.shape[i] == S and value.shape[:i] + value.shape[i + 1 :] == shape]
    assert len(axes) == 1, f"the single learner drew {shape}, the population {tuple(value.shape)}"
    return value.select(axes[0], s).clone()


def close(ours: torch.Tensor, theirs: torch.Tensor, what: str, floor: float = 0.0) -> None:
    err = (ours - theirs).abs().max().item() if ours.numel() else 0.0
    bound = RTOL * max(theirs.abs().max().item() if theirs.numel() else 0.0, 1e-3) + floor
    assert err <= bound, f"{what}: max |member − single| = {err:.3g} > {bound:.3g}"


CASES = [
    ("diffusion", []),
    ("diffusion_ve", []),
    ("gaussian", ["experiment=sac_lag"]),
    ("gaussian", ["experiment=cal"]),
    ("diffusion", ["experiment=algd_reference"]),
    ("diffusion", ["multiplier=pid"]),
    ("diffusion", ["multiplier=alm", "model.cost_loss_reduction=mean"]),
]


@pytest.mark.parametrize("actor, extra", CASES, ids=lambda v: v if isinstance(v, str) else " ".join(v) or "-")
def test_each_member_makes_the_single_learners_update(actor, extra):
    singles = [learner(actor, extra, 1, seed=s) for s in range(S)]
    pop = learner(actor, extra, S, seed=99)
    with torch.no_grad():
        for s, single in enumerate(singles):
            for mine, theirs in member_views(pop, single, s):
                theirs.copy_(mine)
    batches = [batch(s) for s in range(S)]
    stacked = torch.stack(batches)
    draws: list[tuple[str, torch.Tensor]] = []

    def record(kind, shape, draw):
        value = draw()
        draws.append((kind, value.clone()))
        return value

    with patched_draws(record):
        pop_metrics = [pop.update(stacked) for _ in range(2)]
    assert draws, "the update made no random draw"
    lr = 3e-4
    for s, single in enumerate(singles):
        served = iter(draws)

        def serve(kind, shape, draw, _s=s, _served=served):
            want, value = next(_served)
            assert want == kind, f"a {kind} draw where the population made a {want} draw"
            return member_draw(value, shape, _s)

        with patched_draws(serve):
            metrics = [single.update(batches[s]) for _ in range(2)]
        assert next(served, None) is None, "the population made more draws than the single learner"
        for step in range(2):
            for key, value in metrics[step].items():
                close(pop_metrics[step][key][s], value, f"update {step + 1} {key} (member {s})")
        for mine, theirs in member_views(pop, single, s):
            close(theirs, mine, f"member {s} tensor {tuple(mine.shape)}", floor=0.01 * lr)
        assert single.updates == pop.updates == 2


def test_members_are_independent_draws_at_initialisation():
    pop = learner("diffusion", [], S, seed=0)
    first = pop.actor.net.trunk[0].weight
    assert not torch.equal(first[0], first[1]) and not torch.equal(pop.q.net[0].weight[0], pop.q.net[0].weight[S])


def test_a_population_learner_refuses_norm_clipping():
    with pytest.raises(Exception, match="grad_clip is not available for a population"):  # (hydra wraps it)
        learner("diffusion", ["grad_clip=1.0"], S, seed=0)


# ----------------------------------------------------------------------------------------------- population runs
RUN = [
    "env=toy",
    "seeds=[0,1]",
    "warmup_frames=100",
    "batch_size=32",
    "utd=1",
    "eval_every_frames=100",
    "eval_episodes=2",
    "log_every_frames=100",
    "checkpoint_every_frames=100",
    "trainer.threads=1",
]


def test_a_population_run_writes_member_runs_and_resumes_every_member_exactly(tmp_path):
    """seeds=[0,1] for 300 frames straight, and for 170 frames (mid-episode), stopped, resumed to 300 in another
    process: the same population checkpoint (parameters, Adam moments, each member's replay buffer), the same
    evaluations of each member, one TensorBoard point per frame. Each member is an ordinary run in ``seed<s>/``:
    its overrides (``seed=<s>``), status, TensorBoard events and a weights-only checkpoint that the single learner
    built for ``seed=<s>`` loads; reports read the members as runs and env s starts as the single run's env s."""
    straight = run_train(*RUN, "total_frames=300", tmp_path=tmp_path / "straight")
    first = run_train(*RUN, "total_frames=170", tmp_path=tmp_path / "split")
    for proc in (straight, first):
        assert proc.returncode == 0, proc.stderr[-3000:]
    a = next(d for d in run_dirs(tmp_path / "straight") if d.name.endswith("seeds0-1"))
    b = next(d for d in run_dirs(tmp_path / "split") if d.name.endswith("seeds0-1"))
    resumed = run_train(f"resume={b}", "total_frames=300", tmp_path=tmp_path / "split")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at frame 170: 70 updates, replay buffer 170 transitions per member, lambda" in resumed.stdout

    ca, cb = (load_checkpoint(d / "checkpoints" / "last.ckpt") for d in (a, b))
    da, db = ca["PopulationDataModule"], cb["PopulationDataModule"]
    assert da["frames"] == db["frames"] == 300 and ca["updates"] == cb["updates"] == 200
    for key, value in ca["state_dict"].items():
        torch.testing.assert_close(cb["state_dict"][key], value, rtol=0, atol=1e-6, msg=key)
    for sa, sb in zip(ca["optimizer_states"], cb["optimizer_states"]):
        for pa, pb in zip(sa["state"].values(), sb["state"].values()):
            torch.testing.assert_close(pb["exp_avg"], pa["exp_avg"], rtol=0, atol=1e-6)
    for ma, mb in zip(da["members"], db["members"], strict=True):
        assert ma["replay"]["size"] == mb["replay"]["size"] == 300
        assert torch.equal(ma["replay"]["data"]["observation"], mb["replay"]["data"]["observation"])
    m0, m1 = (da["members"][s]["replay"]["data"]["observation"] for s in (0, 1))
    assert not torch.equal(m0, m1)  # two agents, two seeds

    cfg = build.compose(["env=toy", "seed=1"])
    factory = build.build_env(cfg)
    env = factory(1)
    assert torch.equal(m1[0], env.reset()["observation"])  # member 1's env starts as seed 1's single run's
    single = build.build_learner(cfg, env_specs(env), factory.info, build.Device("cpu", cuda_graphs=False))
    env.close()
    for s in (0, 1):
        member_a, member_b = a / f"seed{s}", b / f"seed{s}"
        ta, tb = scalars(member_a), scalars(member_b)
        # the first process evaluated at the end of its budget (frame 170) too
        assert [(e.step, e.value) for e in tb["eval/return"] if e.step != 170] == [
            (e.step, e.value) for e in ta["eval/return"]
        ]
        assert [e.step for e in ta["eval/return"]] == [100, 200, 300]
        assert [(e.step, e.value) for e in tb["train/episode_return"]] == [
            (e.step, e.value) for e in ta["train/episode_return"]
        ]
        for tag in ["loss/critic", "lagrange/lambda"]:
            steps = [e.step for e in tb[tag]]
            assert steps == sorted(set(steps)) and set(steps) - {170} == {e.step for e in ta[tag]}, tag
        assert read_status(member_b)["status"] == "completed" and f"seed={s}" in read_status(member_b)["overrides"]
        own = load_checkpoint(member_b / "checkpoints" / "last.ckpt")
        load_weights(single, own, member_b)  # the single learner's layout
        assert own["RLDataModule"]["frames"] == 300 and own["population"]["seed"] == s
        lam = cb["state_dict"]["multiplier.log_lambda"][s]
        torch.testing.assert_close(own["state_dict"]["multiplier.log_lambda"], lam, rtol=0, atol=0)
    assert read_status(b)["status"] == "completed"
    runs = find_runs(tmp_path / "split")
    assert sorted(r.seed for r in runs) == ["0", "1"] and len({r.config for r in runs}) == 1

    refused = run_train(f"resume={b / 'seed0'}", tmp_path=tmp_path / "split")
    assert refused.returncode == 2 and f"continue the whole population: resume={b}" in refused.stderr
    cmd = [sys.executable, "-m", "algd.evaluate", str(b)]
    refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and f"evaluate one member: {b / 'seed0'} (or seed1)" in refused.stderr


def test_seeds_of_one_is_the_single_run():
    from algd.launch.argv import rewrite_argv

    assert rewrite_argv(["env=toy", "seeds=[3]", "seeds=[ 4 ]"]) == ["env=toy", "seed=3", "seed=4"]
    assert rewrite_argv(["seeds=[0,1]"]) == ["seeds=[0,1]"]
