"""The learner's update timed, profiled by phase and counted in FLOPs, at PointButton1 sizes (batch 256)."""

from __future__ import annotations

import contextlib
import time
from functools import partial

import torch
from tensordict import TensorDict

from algd.bench.timing import median_rate

OBS, ACT, BATCH = 76, 2, 256  # PointButton1 sizes


def random_batch(
    batch: int = BATCH, device="cpu", obs: int = OBS, act: int = ACT, generator=None, events: bool = False
) -> TensorDict:
    """Random replay transitions (PointButton1 sizes unless given), drawn from ``generator`` (default: the global
    RNG). ``events``: 30 % of costs 1 (else 0), 10 % terminations and 20 % ``goal_met``; otherwise uniform costs, no
    termination and no ``goal_met`` key."""
    g = {"generator": generator}
    nxt = {
        "observation": torch.randn(batch, obs, **g),
        "reward": torch.randn(batch, 1, **g),
        "cost": (torch.rand(batch, **g) < 0.3).float() if events else torch.rand(batch, **g),
        "terminated": torch.rand(batch, 1, **g) < 0.1 if events else torch.zeros(batch, 1, dtype=torch.bool),
        "done": torch.zeros(batch, 1, dtype=torch.bool),
    }
    if events:
        nxt["goal_met"] = torch.rand(batch, 1, **g) < 0.2
    out = {"observation": torch.randn(batch, obs, **g), "action": torch.rand(batch, act, **g) * 2 - 1, "next": nxt}
    return TensorDict(out, [batch]).to(device)


def on_device(device: str, graphs: bool) -> list[str]:
    """The trainer overrides that put a learner on ``device`` (cpu | cuda) with or without CUDA graphs; the precision
    stays the config's (``build.resolve_device`` resolves all three, as training does)."""
    return [f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}", f"trainer.cuda_graphs={graphs}"]


def bench_learner(actor: str, device="cpu", graphs: bool = False, overrides=(), population: int = 1):
    """The learner as training builds it (:func:`algd.build.build_learner`, default config, ``env=PointButton``
    for h) at PointButton1 sizes, on ``device``, stepping its own optimisers (usable outside a Trainer);
    ``population`` S: S learners in one (:mod:`algd.learner.population`)."""
    from algd import build

    cfg = build.compose(["env=PointButton", f"actor={actor}", *on_device(device, graphs), *overrides])
    specs = {"obs_dim": OBS, "act_dim": ACT, "action_low": -torch.ones(ACT), "action_high": torch.ones(ACT)}
    info = build.build_env(cfg).info
    learner = build.build_learner(cfg, specs, info, build.resolve_device(cfg), population=population)
    return learner.to(device).standalone()


def learner_updates_per_s(
    actor: str, updates: int, repeats: int, wrap=None, device="cpu", graphs=False, overrides=(), population: int = 1
) -> float:
    """Median updates/s (of the whole population: multiply by ``population`` for seed-updates/s); ``wrap(model)``
    may return a context manager to run the updates in (e.g. autocast); ``overrides``: config overrides of the
    learner (e.g. ``optim.fused=false``)."""
    model = bench_learner(actor, device, graphs=graphs, overrides=overrides, population=population)
    if population > 1:
        batch = torch.stack([random_batch(device=device) for _ in range(population)])
    else:
        batch = random_batch(device=device)
    ctx = wrap(model) if wrap else contextlib.nullcontext
    with ctx():
        for _ in range(3):
            model.update(batch)

        def run():
            for _ in range(updates):
                model.update(batch)

        return median_rate(run, updates, repeats)


PHASES = ["targets", "critic", "cost_critic", "actor", "score_target", "multiplier", "polyak"]


MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def update_breakdown(actor: str, updates: int) -> dict[str, float]:
    """Mean ms per update of each named phase of ``update`` (``actor`` excludes its ``score_target`` part), and
    ``matmul``: the time inside matmul kernels (self time of mm, addmm, bmm, baddbmm) over the whole update.
    ``actor="minimal_sac"`` profiles the yardstick (``matmul`` and ``total_profiled`` only)."""
    from torch.profiler import ProfilerActivity, profile

    if actor == "minimal_sac":
        from algd.bench.sac import minimal_sac_update

        update = minimal_sac_update()
    else:
        model, batch = bench_learner(actor), random_batch()

        def update():
            model.update(batch)

    for _ in range(3):
        update()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(updates):
            update()
        total = (time.perf_counter() - t0) / updates * 1e3
    ms = dict.fromkeys(PHASES, 0.0) if actor != "minimal_sac" else {}
    ms["matmul"] = 0.0
    for event in prof.events():
        if event.name in ms:
            ms[event.name] += event.cpu_time_total / 1e3 / updates
        if event.name in MATMULS:
            ms["matmul"] += event.self_cpu_time_total / 1e3 / updates
    if "actor" in ms:
        ms["actor"] -= ms["score_target"]
    ms["total_profiled"] = total
    return {k: round(v, 3) for k, v in ms.items()}


def flops_per_update(actor: str) -> int:
    """Matmul FLOPs (forward + backward) of one update, counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    model, batch = bench_learner(actor), random_batch()
    model.update(batch)
    with FlopCounterMode(display=False) as counter:
        model.update(batch)
    return int(counter.get_total_flops())


def autocast_bf16(model):
    return partial(torch.autocast, "cpu", dtype=torch.bfloat16)


def compile_critics(model):
    for critic in (model.q, model.qc):
        critic.from_features = torch.compile(critic.from_features, dynamic=False)
    return contextlib.nullcontext
