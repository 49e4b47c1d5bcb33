"""Collection (raw env vs the training collector) and the whole training loop, timed as training builds them."""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import time
import warnings

import torch
from torch import nn

from algd.bench.timing import interleaved_rates, median_rate


class RandomActor(nn.Module):
    """An actor whose ``act`` draws uniform actions in [−1, 1]: the collector pays for the training policy wrapper
    (``as_policy``) but not for a network."""

    population = 1  # one env, one state at a time (``as_policy`` reads it)

    def __init__(self, act_dim: int):
        super().__init__()
        self.act_dim = act_dim

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return torch.rand(*obs.shape[:-1], self.act_dim) * 2 - 1


def paper_factory(env_id: str):
    """The Safety-Gym task as training builds it on the paper protocol (400-step episodes, fixed layout)."""
    from algd import build

    return build.build_env(build.compose(["env=safety_gym", f"env.id={env_id}"]))


def collect_loop(iterator, frames: int):
    """A function drawing batches from a collector's iterator until ``frames`` frames have come."""

    def loop():
        n = 0
        while n < frames:
            n += next(iterator).numel()

    return loop


def collect_fps(
    env_id: str, frames: int, repeats: int, frames_per_batch: int = 10, workers: int = 2
) -> dict[str, float]:
    """Raw safety-gymnasium loop vs the training Collector, interleaved (and ``collector=multi`` with ``workers``
    processes), same env construction (paper protocol)."""
    from algd.actors import as_policy
    from algd.data.collectors import make_collector

    factory = paper_factory(env_id)
    env = factory(0)
    raw = env.gym_env

    def raw_loop():
        raw.reset()
        for _ in range(frames):
            *_, terminated, truncated, _ = raw.step(raw.action_space.sample())
            if terminated or truncated:
                raw.reset()

    policy = as_policy(RandomActor(env.action_spec.shape[-1]))
    collector = make_collector(env, policy, frames_per_batch)
    out = interleaved_rates(
        {"raw_fps": raw_loop, "collector_fps": collect_loop(iter(collector), frames)}, frames, repeats
    )
    collector.shutdown()
    env.close()
    out["ratio"] = out["collector_fps"] / out["raw_fps"]
    if workers > 1:  # collector=multi: `workers` env processes stepping together (MultiSyncCollector)
        from functools import partial

        multi = make_collector([partial(factory, i) for i in range(workers)], policy, frames_per_batch * workers)
        loop = collect_loop(iter(multi), frames)
        loop()
        out["multi_fps"] = median_rate(loop, frames, repeats)
        out["multi_workers"] = workers
        out["multi_over_single"] = out["multi_fps"] / out["collector_fps"]
        multi.shutdown()
        # TorchRL's weight-sync objects shut down in __del__; left to interpreter exit they deadlock on a queue
        # thread, so they are collected here.
        del multi, loop
        gc.collect()
    return out


def collector_wrapper_ab(env_id: str, frames: int, repeats: int, frames_per_batch: int = 10) -> dict[str, float]:
    """The training Collector on the lean env (``algd.envs.SafetyGymEnv``) vs on TorchRL's generic
    ``SafetyGymnasiumWrapper`` + ``DoubleToFloat`` around the same kind of raw env, interleaved, frames/s."""
    from torchrl.envs import DoubleToFloat, TransformedEnv
    from torchrl.envs.libs.safety_gymnasium import SafetyGymnasiumWrapper

    from algd.actors import as_policy
    from algd.data.collectors import make_collector

    factory = paper_factory(env_id)
    envs = {
        "lean_fps": factory(0),
        "torchrl_wrapper_fps": TransformedEnv(SafetyGymnasiumWrapper(factory(0).gym_env), DoubleToFloat()),
    }
    policy = as_policy(RandomActor(envs["lean_fps"].action_spec.shape[-1]))
    collectors = {name: make_collector(env, policy, frames_per_batch) for name, env in envs.items()}
    out = interleaved_rates({name: collect_loop(iter(c), frames) for name, c in collectors.items()}, frames, repeats)
    for name, collector in collectors.items():
        collector.shutdown()
        envs[name].close()
    out["speedup"] = out["lean_fps"] / out["torchrl_wrapper_fps"]
    return out


def train_fps(
    actor: str,
    warmup: int = 300,
    learn_frames: int = 40,
    utd: float = 10.0,
    env: str = "PointButton1",
    device: str = "cpu",
    seeds: int = 1,
    overrides=(),
) -> dict[str, float]:
    """Frames/s and updates/s of the real training loop (DataModule, Lightning Trainer, UTD 10) on PointButton1
    (paper protocol) or the toy env, learner and replay on ``device``, timed from the first learning frame to the
    end; no logger, evaluation or checkpoints. ``seeds`` S > 1: a population of S (``seeds=[0..S-1]``); frames/s
    and updates/s are per member, ``seed_updates_per_s`` is S × updates/s. ``overrides``: config overrides (e.g.
    ``trainer.updates_per_graph=10``)."""
    import lightning as L

    from algd import build
    from algd.bench.learner import on_device

    cfg = build.compose(
        [
            f"env={'toy' if env == 'toy' else 'PointButton'}",
            f"actor={actor}",
            f"total_frames={warmup + learn_frames}",
            f"warmup_frames={warmup}",
            f"utd={utd}",
            *on_device(device, graphs=device == "cuda"),
            *overrides,
        ]
    )
    device = build.resolve_device(cfg)
    factory = build.build_env(cfg)
    members = list(range(seeds)) if seeds > 1 else None
    dm = build.build_data(cfg, factory, device, members)
    marks: dict[str, tuple[float, int, int]] = {}

    class Timer(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if "start" not in marks and dm.frames > warmup:
                marks["start"] = (time.perf_counter(), dm.frames, pl_module.updates)

        def on_train_end(self, trainer, pl_module):
            marks["end"] = (time.perf_counter(), dm.frames, pl_module.updates)

    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "torchrl")]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:  # Lightning's and TorchRL's one-off notices
            logger.setLevel(logging.WARNING)
        model = build.build_learner(cfg, dm.specs(), factory.info, device, population=seeds)
        dm.set_policy(model.actor)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = build.build_trainer(cfg, device, callbacks=[Timer()])
            trainer.fit(model, datamodule=dm)
    finally:
        dm.close()
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    (t0, _, u0), (t1, _, u1) = marks["start"], marks["end"]
    # Each learning frame costs one env step plus ``utd`` updates: frames/s = (updates/s) / utd.
    rate = (u1 - u0) / (t1 - t0)
    return {"fps": rate / utd, "updates_per_s": rate, "seed_updates_per_s": seeds * rate}


def render_fps(frames: int, repeats: int, size: int = 128) -> dict[str, float]:
    """The evaluation video's rendering: frames/s of :func:`algd.callbacks.video.record_episode` (a step and an
    offscreen render per frame, random actions) on PointButton1 (paper protocol) at the video's default size, beside
    the same steps without rendering."""
    from algd.callbacks.video import record_episode

    factory = paper_factory("SafetyPointButton1-v0")
    env = factory.render_env(seed=0, width=size, height=size)
    plain = factory(0)
    try:

        def rendered():
            record_episode(env, lambda td: td.set("action", env.action_spec.rand()), seed=0, max_frames=frames)

        def stepped():
            td = plain.reset()
            for _ in range(frames - 1):
                td = plain.rand_step(td)

        rates = interleaved_rates({"render": rendered, "step_only": stepped}, frames, repeats)
    finally:
        env.close()
        plain.close()
    return {"render_fps": rates["render"], "step_only_fps": rates["step_only"], "size": size}
