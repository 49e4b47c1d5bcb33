"""The GPU path (``trainer=gpu``): learner, optimisers and replay storage on CUDA; envs and the acting copy of the
actor on CPU. Run with ``make test-gpu`` on a machine with a CUDA device: without one these tests fail, they do not
skip (``make test`` deselects them)."""

import pytest
import torch
from conftest import run_dirs, run_train

from test_end_to_end import load_ckpt, scalars

pytestmark = pytest.mark.gpu

TOY = [
    "env=toy",
    "warmup_frames=100",
    "batch_size=32",
    "utd=1",
    "eval_every_frames=150",
    "eval_episodes=1",
    "log_every_frames=100",
]


def _need_cuda():
    assert torch.cuda.is_available(), f"the gpu tests need a CUDA device; torch {torch.__version__} sees none"


def test_replay_on_device_acting_copy_on_cpu():
    _need_cuda()
    from algd.actors.diffusion import DiffusionActor
    from algd.data.module import RLDataModule
    from algd.envs.toy import ToyFactory

    dm = RLDataModule(ToyFactory(), seed=0, total_frames=60, warmup_frames=40, utd=1, batch_size=8, device="cuda")
    actor = DiffusionActor(obs_dim=6, act_dim=2, action_low=-torch.ones(2), action_high=torch.ones(2)).cuda()
    dm.set_policy(actor)
    try:
        batches = [b for b in dm.batches() if b is not None]
    finally:
        dm.close()
    assert len(batches) == 20 and all(b["observation"].device.type == "cuda" for b in batches)
    assert all(p.device.type == "cpu" for p in dm.acting_actor.parameters())
    assert all(torch.equal(a.cpu(), b) for a, b in zip(actor.parameters(), dm.acting_actor.parameters()))
    with dm.replay_in_checkpoint():
        replay = dm.state_dict()["replay"]
    assert replay["size"] == 60 and replay["data"]["observation"].device.type == "cpu"  # loadable without CUDA


@pytest.mark.parametrize("actor", ["diffusion", "gaussian"])
def test_cuda_graph_update_equals_eager_update(actor):
    """The replayed CUDA graph runs the same maths as the eager update: same initial weights, same batches and the
    same CUDA RNG seed before each update give the same parameters after several updates (Polyak included)."""
    _need_cuda()
    from algd.bench.learner import bench_learner, random_batch
    from algd.learner.graphs import GraphedUpdate

    torch.manual_seed(0)
    eager = bench_learner(actor, "cuda", graphs=True)
    graphed = bench_learner(actor, "cuda", graphs=True)
    graphed.load_state_dict(eager.state_dict())
    eager.cuda_graphs = False  # same capturable optimisers, eager path
    batches = [random_batch(device="cuda") for _ in range(5)]
    # Capture first: its warm-up updates draw random numbers (and must leave weights and Adam states untouched).
    graphed._graphed = GraphedUpdate(graphed, batches[0])
    assert all(torch.equal(p1, p2) for p1, p2 in zip(eager.parameters(), graphed.parameters()))
    for k, batch in enumerate(batches):
        for model in (eager, graphed):
            torch.cuda.manual_seed(100 + k)
            metrics = model.update(batch)
        diffs = {
            name: (p1 - p2).abs().max().item() for (name, p1), p2 in zip(eager.named_parameters(), graphed.parameters())
        }
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] < 1e-4, f"update {k}: {worst} differs by {diffs[worst]:.3g}"
    assert graphed._graphed is not None and eager._graphed is None
    assert all(torch.isfinite(v) for v in metrics.values())
    assert eager.pop_metrics().keys() == graphed.pop_metrics().keys()


@pytest.mark.parametrize("graphs", ["true", "false"])
def test_trainer_gpu_trains_and_resumes(tmp_path, graphs):
    _need_cuda()
    proc = run_train(*TOY, "trainer=gpu", f"trainer.cuda_graphs={graphs}", "total_frames=300", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[algd] done: 300 frames, 200 updates" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    ckpt = load_ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert ckpt["RLDataModule"]["replay"]["size"] == 300
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    resumed = run_train(f"resume={run_dir}", "total_frames=450", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[algd] done: 450 frames, 350 updates" in resumed.stdout
    assert [e.step for e in scalars(run_dir)["eval/return"]] == [150, 300, 450]
