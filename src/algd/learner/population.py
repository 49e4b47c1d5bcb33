"""Populations: S independent learners (seeds) trained as one, every network carrying a learner axis (issue 17).

Shapes: a single learner's batch is [B, ·]; a population's is [S, B, ·], the learner axis right before the batch
axis (leading sample axes, as in the actor's Monte-Carlo energy, come before it: [N, S, B, ·]); ensembles put their
member axis first ([E, S, B, 1]). Per-learner scalars (λ, losses, metrics) are 0-dim for one learner and [S] for a
population. Every loss is the sum over learners of the learner's own loss, so each learner's parameters get exactly
the gradient they would get alone, and Adam, being element-wise, steps each as its own Adam would.
"""

from __future__ import annotations

import torch


def batch_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the last two axes (batch and feature, [..., B, k]): 0-dim for one learner's [B, k], [S] for a
    population's [S, B, k] (and [E, S] for an ensemble's [E, S, B, k])."""
    return x.mean((-2, -1))


def learner_shape(population: int) -> tuple[int, ...]:
    """The shape of a per-learner scalar: () for one learner, (S,) for a population."""
    return () if int(population) == 1 else (int(population),)


def per_row(value: torch.Tensor) -> torch.Tensor:
    """A per-learner value (0-dim, or [S]) shaped to broadcast over the learners' batches [..., S, B, k]."""
    return value.view(-1, 1, 1) if value.dim() else value


def member_views(population, single, s: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(tensor of a single learner, the view of learner ``s``'s copy of it in ``population``) for every parameter and
    buffer of ``single`` (a learner, or any part of one, built for one learner; ``population`` the same part built for
    S): copy one way to seed a population member from a single run, the other way to extract member s as an ordinary
    single-learner state. Layouts: ``nn.Linear`` [out, in] ↔ ``EnsembleLinear`` [S, in, out]; an ensemble of E members
    [E, …] ↔ E·S rows (member e of learner s is row e·S + s); ``nn.Embedding`` ↔ ``embed_weight[s]``; a per-learner
    scalar ↔ its [S] vector; anything else is shared (same shape)."""
    from torch import nn

    from algd.learner.nets import EnsembleLinear

    modules = dict(population.named_modules())
    pairs = []
    for name, mod in single.named_modules():
        other = modules[name] if not isinstance(mod, nn.Embedding) else modules[name.rpartition(".")[0]]
        if isinstance(mod, nn.Linear):
            pairs += [(mod.weight, other.weight[s].T), (mod.bias, other.bias[s, 0])]
        elif isinstance(mod, EnsembleLinear):
            e = mod.weight.shape[0]
            pairs += [(t, getattr(other, k).view(e, -1, *t.shape[1:])[:, s]) for k, t in mod.named_parameters()]
        elif isinstance(mod, nn.Embedding):
            pairs.append((mod.weight, other.embed_weight[s]))
        else:
            own = [*mod.named_parameters(recurse=False), *mod.named_buffers(recurse=False)]
            for key, t in own:
                theirs = getattr(other, key)
                pairs.append((t, theirs if theirs.shape == t.shape else theirs[s]))
    return pairs


@torch.no_grad()
def member_state_dict(population, single, s: int) -> dict:
    """Learner ``s`` of ``population`` as the state dict of ``single`` (the same learner built for one): what a
    single run with that member's seed would have saved (its weights; ``single`` is overwritten)."""
    for tensor, view in member_views(population, single, s):
        tensor.copy_(view)
    return single.state_dict()
