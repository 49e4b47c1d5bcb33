"""CUDA-graph capture of the learner's update (``trainer=gpu``): one graph launch instead of ~1,000 kernel launches."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase

from algd.data.replay import transitions

if TYPE_CHECKING:
    from algd.learner.module import SafeActorCritic

LOSSES = ("loss/critic", "loss/cost_critic", "loss/actor")


class GraphedUpdate:
    """``SafeActorCritic.learn`` captured once as a CUDA graph and replayed on each batch (copied into the graph's
    static input tensors): one graph launch instead of ~1,000 kernel launches per update. The maths and the order of
    the steps are those of the eager update; the Polyak averaging and the loss check run eagerly after each replay.

    Capture needs the optimisers' state to exist, so ``warmup`` updates run first on a side stream; the parameters,
    buffers and optimiser states are then put back in place (states created by the warm-up are zeroed, which is
    Adam's fresh state), so the warm-up leaves no trace but its random draws. Optimisers must be ``capturable``
    (``trainer=gpu`` sets ``optim.capturable=true``)."""

    def __init__(self, model: SafeActorCritic, batch: TensorDictBase, warmup: int = 3):
        self.optimizers = [getattr(opt, "optimizer", opt) for opt in model.optimizer_list()]  # no Lightning wrapper
        for opt in self.optimizers:
            if not all(group.get("capturable", False) for group in opt.param_groups):
                raise ValueError(
                    f"cuda_graphs needs capturable optimisers (optim.capturable=true); {type(opt).__name__} is not"
                )
        self.static = transitions(batch).clone()
        tensors = [*model.parameters(), *model.buffers()]
        saved = [t.detach().clone() for t in tensors]
        saved_state = {
            id(t): t.clone()
            for opt in self.optimizers
            for st in opt.state.values()
            for t in st.values()
            if torch.is_tensor(t)
        }
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                model.learn(self.static, self.optimizers, check=False)
        torch.cuda.current_stream().wait_stream(side)
        with torch.no_grad():
            for t, v in zip(tensors, saved):
                t.copy_(v)
            for opt in self.optimizers:
                for st in opt.state.values():
                    for t in st.values():
                        if not torch.is_tensor(t):
                            continue
                        if id(t) in saved_state:
                            t.copy_(saved_state[id(t)])
                        else:
                            t.zero_()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = model.learn(self.static, self.optimizers, check=False)

    def __call__(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        self.static.update_(transitions(batch))
        self.graph.replay()
        return self.out
