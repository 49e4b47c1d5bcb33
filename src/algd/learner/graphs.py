"""CUDA-graph capture of the learner's update (``trainer=gpu``): one graph launch instead of ~1,000 kernel launches;
with ``trainer.updates_per_graph`` = k > 1, one launch for k updates, the replay sampling on the device included."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase

from algd.data.replay import transitions

if TYPE_CHECKING:
    from algd.learner.module import SafeActorCritic

LOSSES = ("loss/critic", "loss/cost_critic", "loss/actor")


def raw_optimizers(model: SafeActorCritic) -> list[torch.optim.Optimizer]:
    """The optimisers ``model``'s update steps, without Lightning's wrapper (what a graph captures)."""
    return [getattr(opt, "optimizer", opt) for opt in model.optimizer_list()]


def capture(model: SafeActorCritic, fn: Callable[[], object], warmup: int = 3) -> tuple[torch.cuda.CUDAGraph, object]:
    """Capture ``fn()`` (steps of ``model``'s optimisers) as a CUDA graph; returns (graph, ``fn``'s output tensors).

    Capture needs the optimisers' state to exist, so ``warmup`` calls run first on a side stream; the parameters,
    buffers and optimiser states are then put back in place (states created by the warm-up are zeroed, which is
    Adam's fresh state), so the warm-up leaves no trace but its random draws. Optimisers must be ``capturable``
    (``trainer=gpu`` sets ``optim.capturable=true``)."""
    optimizers = raw_optimizers(model)
    for opt in optimizers:
        if not all(group.get("capturable", False) for group in opt.param_groups):
            raise ValueError(
                f"cuda_graphs needs capturable optimisers (optim.capturable=true); {type(opt).__name__} is not"
            )
    tensors = [*model.parameters(), *model.buffers()]
    saved = [t.detach().clone() for t in tensors]
    saved_state = {
        id(t): t.clone() for opt in optimizers for st in opt.state.values() for t in st.values() if torch.is_tensor(t)
    }
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    with torch.no_grad():
        for t, v in zip(tensors, saved):
            t.copy_(v)
        for opt in optimizers:
            for st in opt.state.values():
                for t in st.values():
                    if not torch.is_tensor(t):
                        continue
                    if id(t) in saved_state:
                        t.copy_(saved_state[id(t)])
                    else:
                        t.zero_()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph, out


class GraphedUpdate:
    """``SafeActorCritic.learn`` captured once as a CUDA graph and replayed on each batch (copied into the graph's
    static input tensors). The maths and the order of the steps are those of the eager update; the Polyak averaging
    and the loss check run eagerly after each replay."""

    def __init__(self, model: SafeActorCritic, batch: TensorDictBase, warmup: int = 3):
        self.static = transitions(batch).clone()
        optimizers = raw_optimizers(model)
        self.graph, self.out = capture(model, lambda: model.learn(self.static, optimizers, check=False), warmup)

    def __call__(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        self.static.update_(transitions(batch))
        self.graph.replay()
        return self.out


class GraphedUpdates:
    """k consecutive updates in one CUDA graph, each on a batch that ``sample`` (a
    :class:`~algd.data.replay.DeviceSampler`) draws on the device inside the graph, with the Polyak averaging where
    it falls due (``phase``: the update counter modulo ``polyak_every`` at the chunk's start). Outputs: the sum of
    the k updates' metric vectors (:meth:`~algd.learner.module.SafeActorCritic.metric_vector`) and the k updates'
    losses [k, 3] (checked for NaN/Inf after the replay: one host sync per k updates)."""

    def __init__(self, model: SafeActorCritic, sample: Callable[[], TensorDictBase], k: int, phase: int, warmup=1):
        optimizers = raw_optimizers(model)

        def updates():
            total, losses = None, []
            for i in range(k):
                metrics = model.learn(sample(), optimizers, check=False)
                if (phase + i + 1) % model.polyak_every == 0:
                    model.polyak()
                vector = model.metric_vector(metrics)
                total = vector if total is None else total + vector
                losses.append(torch.stack([metrics[name].reshape(-1).sum() for name in LOSSES]))
            return total, torch.stack(losses)

        self.graph, (self.total, self.losses) = capture(model, updates, warmup)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.graph.replay()
        return self.total, self.losses
