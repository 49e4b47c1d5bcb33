"""The replay buffer: TorchRL's uniform ``TensorDictReplayBuffer`` over a ``LazyTensorStorage`` on the learner's
device, and its checkpoint form."""

from __future__ import annotations

import torch
from tensordict import TensorDict
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
