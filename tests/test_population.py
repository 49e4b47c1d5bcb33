"""Populations (algd.learner.population): S learners in one module, each making exactly the update it would make
alone. Member s of a population is given the weights of a single learner, the same batch and the same random
draws; after two updates (Adam moments and a Polyak step included) its losses, metrics, parameters and targets
equal the single learner's to float32 rounding (the batched matmuls sum in another order)."""

import pytest
import torch
from conftest import patched_draws

from algd import build
from algd.bench.learner import random_batch
from algd.learner.population import member_views

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
