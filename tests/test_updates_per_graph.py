"""Several updates per step with the replay sampling on the device (``trainer.updates_per_graph``, the GPU path's
multi-update CUDA graph): the sampler and the loader's accounting, on the CPU. The graph itself: tests/test_gpu.py."""

import pytest
import torch
from tensordict import TensorDict

from algd.data.module import RLDataModule
from algd.data.population import PopulationDataModule
from algd.data.replay import DeviceSampler, Updates, make_buffer, transitions
from algd.envs.toy import ToyFactory


def filled_buffer(rows: int, capacity: int = 64):
    """A replay buffer whose row i holds observation i (and next observation i + 0.5)."""
    buffer = make_buffer(capacity, 8)
    obs = torch.arange(rows, dtype=torch.float32)[:, None].repeat(1, 3)
    nxt = {
        "observation": obs + 0.5,
        "reward": obs[:, :1],
        "cost": torch.zeros(rows),
        "terminated": torch.zeros(rows, 1, dtype=torch.bool),
        "done": torch.zeros(rows, 1, dtype=torch.bool),
    }
    buffer.extend(TensorDict({"observation": obs, "action": obs[:, :2], "next": nxt}, [rows]))
    return buffer


def test_device_sampler_draws_filled_rows_only_and_refreshes_sizes():
    one, two = filled_buffer(5), filled_buffer(40)
    sampler = DeviceSampler([one], batch_size=500)
    sampler.refresh()
    batch = sampler()
    assert batch.batch_size == torch.Size([500])
    assert set(batch.keys(True, True)) == set(transitions(one.sample()).keys(True, True))
    rows = batch["observation"][:, 0]
    assert set(rows.long().tolist()) == {0, 1, 2, 3, 4}  # every filled row drawn, none beyond
    assert torch.equal(batch["next", "observation"], batch["observation"] + 0.5)  # whole rows, not mixed
    pair = DeviceSampler([one, two], batch_size=400)
    pair.refresh()
    batch = pair()
    assert batch.batch_size == torch.Size([2, 400])
    assert batch["observation"][0].max() <= 4 and batch["observation"][1].max() > 30  # each member its own buffer
    two.extend(filled_buffer(60).storage[40:60])  # the buffer grows to 60 rows
    assert pair()["observation"][1].max() <= 39  # sizes as of the last refresh
    pair.refresh()
    assert pair()["observation"][1].max() > 39
    torch.manual_seed(0)
    first = pair.indices()
    torch.manual_seed(0)
    assert torch.equal(first, pair.indices())  # the global RNG of the storage's device draws them


@pytest.mark.parametrize("population", [False, True])
def test_the_loader_hands_over_k_updates_at_a_time_and_every_update_is_made_once(population):
    """UTD 2.5, 10 frames per collection: 25 updates per collection, as 3 × Updates(8) and 1 single batch; the
    updates add up to utd × learning frames as with one batch at a time."""
    kwargs = dict(total_frames=100, warmup_frames=40, utd=2.5, batch_size=8, updates_per_step=8)
    dm = PopulationDataModule([0, 1], env_factory=ToyFactory(), **kwargs) if population else None
    dm = dm or RLDataModule(ToyFactory(), seed=0, **kwargs)
    from algd.actors.gaussian import GaussianActor

    bounds = {"action_low": -torch.ones(2), "action_high": torch.ones(2)}
    dm.set_policy(GaussianActor(obs_dim=6, act_dim=2, population=2 if population else 1, **bounds))
    done, kinds = [0], []  # the learner's update counter, as the loader reads it
    try:
        for item in dm.batches(lambda: done[0]):
            if item is None:
                kinds.append("tick")
                continue
            if isinstance(item, Updates):
                batch = item.sample()
                kinds.append(item.count)
                done[0] += item.count
            else:
                batch = item
                kinds.append(1)
                done[0] += 1
            assert batch.batch_size == (torch.Size([2, 8]) if population else torch.Size([8]))
    finally:
        dm.close()
    assert done[0] == int(2.5 * (100 - 40)) == 150
    learning = [k for k in kinds if k != "tick"]
    assert learning[:4] == [8, 8, 8, 1] and learning.count(8) == 18 and learning.count(1) == 6
