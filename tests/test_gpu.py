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


def _device_replay(rows: int = 600):
    from algd.bench.learner import random_batch
    from algd.data.replay import DeviceSampler, make_buffer

    buffer = make_buffer(1000, 256, device="cuda")
    buffer.extend(random_batch(rows, device="cuda", events=True))
    sampler = DeviceSampler([buffer], 256)
    sampler.refresh()
    return buffer, sampler


def test_k_updates_in_one_graph_equal_k_eager_updates():
    """trainer.updates_per_graph: 4 updates with their replay sampling in one CUDA graph make the same updates as 4
    eager ones drawing the same indices (same CUDA RNG seed before each chunk), Polyak steps included."""
    _need_cuda()
    from algd.bench.learner import bench_learner
    from algd.learner.graphs import GraphedUpdates

    torch.manual_seed(0)
    eager = bench_learner("diffusion", "cuda", graphs=True)
    graphed = bench_learner("diffusion", "cuda", graphs=True)
    graphed.load_state_dict(eager.state_dict())
    eager.cuda_graphs = False
    _, sampler = _device_replay()
    graphed._chunks[(4, 0)] = GraphedUpdates(graphed, sampler, 4, 0)  # capture first (its warm-up draws)
    assert all(torch.equal(p1, p2) for p1, p2 in zip(eager.parameters(), graphed.parameters()))
    for r in range(3):
        for model in (eager, graphed):
            torch.cuda.manual_seed(300 + r)
            model.update_many(sampler, 4)
        diffs = {
            name: (p1 - p2).abs().max().item() for (name, p1), p2 in zip(eager.named_parameters(), graphed.parameters())
        }
        worst = max(diffs, key=diffs.get)
        assert diffs[worst] < 1e-4, f"chunk {r}: {worst} differs by {diffs[worst]:.3g}"
    assert eager.updates == graphed.updates == 12 and list(graphed._chunks) == [(4, 0)]
    m1, m2 = eager.pop_metrics(), graphed.pop_metrics()
    assert m1.keys() == m2.keys()
    assert all(abs(m1[k] - m2[k]) <= 1e-3 * (1 + abs(m1[k])) for k in m1), {k: (m1[k], m2[k]) for k in m1}


def test_a_non_finite_loss_inside_a_graph_of_updates_is_caught_after_it():
    _need_cuda()
    from algd.bench.learner import bench_learner
    from algd.learner.module import NonFiniteLossError

    model = bench_learner("diffusion", "cuda", graphs=True)
    buffer, sampler = _device_replay()
    model.update_many(sampler, 4)  # captured and replayed: finite
    buffer.storage._storage["next", "reward"].fill_(float("nan"))  # every row's reward, in place (same addresses)
    with pytest.raises(NonFiniteLossError, match="non-finite loss/critic"):
        model.update_many(sampler, 4)
    assert model.updates == 4  # the failed chunk is not counted


def test_trainer_gpu_with_several_updates_per_graph_trains_and_resumes(tmp_path):
    _need_cuda()
    args = [
        *(a for a in TOY if a != "utd=1"),
        "utd=2",
        "trainer=gpu",
        "trainer.updates_per_graph=10",
        "total_frames=300",
    ]
    proc = run_train(*args, tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[algd] done: 300 frames, 400 updates" in proc.stdout
    (run_dir,) = run_dirs(tmp_path)
    resumed = run_train(f"resume={run_dir}", "total_frames=450", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "[algd] done: 450 frames, 700 updates" in resumed.stdout
    ckpt = load_ckpt(run_dir / "checkpoints" / "last.ckpt")
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
