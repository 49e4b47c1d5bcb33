"""The replay buffer: TorchRL's uniform ``TensorDictReplayBuffer`` over a ``LazyTensorStorage`` on the learner's
device, and its checkpoint form."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
from torchrl.data.replay_buffers.samplers import RandomSampler

TRANSITION_KEYS = [
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "cost"),
    ("next", "terminated"),
    ("next", "done"),
    ("next", "goal_met"),  # Safety-Gym envs only (the others have no such key)
]


def transitions(data):
    """The replay keys of collected frames (``goal_met`` where the env has it)."""
    return data.select(*TRANSITION_KEYS, strict=False)


def make_buffer(capacity: int, batch_size: int, device: str | torch.device = "cpu") -> TensorDictReplayBuffer:
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(int(capacity), device=device), sampler=RandomSampler(), batch_size=int(batch_size)
    )


# Not the buffer's own ``state_dict``: the lazy storage allocates its whole capacity at the first write, and its
# state_dict would write all of it (1 M rows by default) into every checkpoint. This keeps only the filled rows, in
# storage order, and the writer's cursor: reloading reproduces the buffer and its future overwrites exactly. The rows
# are copied: a slice is a view, and ``torch.save`` writes a view's whole underlying storage (all 1 M rows again).
# (``torch.clone`` per tensor: ``TensorDict.clone()`` turned some −0.0 into +0.0 here, tensordict 0.14.3.)
def buffer_state(buffer: TensorDictReplayBuffer) -> dict:
    n = len(buffer.storage)
    data = buffer.storage[:n].apply(lambda t: t.to("cpu", copy=True)).to_dict() if n else {}
    return {"size": n, "data": data, "writer": buffer.writer.state_dict()}


def load_buffer_state(buffer: TensorDictReplayBuffer, state: dict) -> None:
    buffer.empty()
    if state["size"]:
        buffer.extend(TensorDict(state["data"], batch_size=[state["size"]]))
        buffer.writer.load_state_dict(state["writer"])


class DeviceSampler:
    """Uniform replay batches drawn where the storage lives, with no host sync, so that a CUDA graph can capture the
    sampling together with the updates (``trainer.updates_per_graph``): indices from ``torch.rand`` on the device
    scaled by the filled sizes (a device tensor that :meth:`refresh` sets, outside any capture, before each chunk of
    updates), rows gathered from the storage (``LazyTensorStorage`` allocates its whole capacity once, at its first
    write, so the addresses a graph recorded stay valid). One buffer: a batch [B]; S buffers (a population's
    members): [S, B], row s from buffer s."""

    def __init__(self, buffers: list[TensorDictReplayBuffer], batch_size: int):
        self.buffers, self.batch_size = list(buffers), int(batch_size)
        self.size = torch.zeros(len(self.buffers), 1, device=self.buffers[0].storage.device)

    def refresh(self) -> None:
        """The buffers' filled sizes onto the device (one small copy)."""
        sizes = torch.tensor([[float(len(b))] for b in self.buffers])
        self.size.copy_(sizes, non_blocking=True)

    def indices(self) -> torch.Tensor:
        """[S, B] row indices, uniform over each buffer's filled rows."""
        u = torch.rand(len(self.buffers), self.batch_size, device=self.size.device)
        return torch.minimum((u * self.size).long(), self.size.long() - 1)  # (u·n may round up to n in float32)

    def __call__(self) -> TensorDictBase:
        rows = [transitions(b.storage[i]) for b, i in zip(self.buffers, self.indices().unbind(0))]
        return rows[0] if len(rows) == 1 else torch.stack(rows)


@dataclass
class Updates:
    """What the loader hands the learner instead of a batch when ``trainer.updates_per_graph`` > 1: ``count``
    updates, each on a batch ``sample()`` draws on the device
    (:meth:`algd.learner.module.SafeActorCritic.update_many`)."""

    count: int
    sample: DeviceSampler
