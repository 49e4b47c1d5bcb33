"""Benchmarks (``make bench``): every ratio is measured within one run, since these machines vary ±30–50 %.

- ``updates_per_s``: the learner's full update (``SafeActorCritic.update``) per actor, and ``minimal_sac``,
  a deliberately plain eager SAC update (twin Q 2×256, Gaussian actor 2×256) kept as a yardstick;
- ``update_ms_breakdown``: wall time of the update's named phases (``record_function`` ranges in ``update``);
- ``flops_per_update`` (matmul FLOPs, forward and backward, counted by ``FlopCounterMode``), the achieved GFLOP/s
  and ``peak_matmul_gflops``, a 2048² fp32 matmul timed in the same run (bf16 too: ``peak_matmul_gflops_bf16``);
- ``collect``: raw safety-gymnasium steps/s (random actions, resets included) vs the TorchRL ``Collector`` used by
  training (same env, a policy returning random actions), on PointGoal1 and PointButton1 (paper protocol);
- ``train_fps``: env frames/s of the real training loop (DataModule → Lightning ``Trainer`` → ``update``, UTD 10) on
  PointButton1 once learning has started, with the updates/s seen inside Lightning;
- ``options`` (``--options``): directions measured but not used (CPU bf16 autocast, ``torch.compile``), updates/s.
Each timing is repeated and the median reported. Writes ``logs/bench/bench.json``.
"""

from __future__ import annotations

import argparse
import gc
import contextlib
import io
import os
import json
import logging
import statistics
import time
import warnings
from functools import partial
from pathlib import Path

import torch
from tensordict import TensorDict
from torch import nn

OBS, ACT, BATCH = 76, 2, 256  # PointButton1 sizes


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_rate(fn, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def _batch(batch: int = BATCH, device="cpu") -> TensorDict:
    return TensorDict({"observation": torch.randn(batch, OBS), "action": torch.rand(batch, ACT) * 2 - 1,
                       "next": {"observation": torch.randn(batch, OBS), "reward": torch.randn(batch, 1),
                                "cost": torch.rand(batch), "terminated": torch.zeros(batch, 1, dtype=torch.bool),
                                "done": torch.zeros(batch, 1, dtype=torch.bool)}}, [batch]).to(device)


def build_learner(actor: str, device="cpu", obs_dim: int = OBS, act_dim: int = ACT, graphs: bool = False):
    """The learner with default settings at PointButton1 sizes, usable outside a Trainer."""
    from algd.actors.diffusion import DiffusionActor, DiffusionVEActor
    from algd.actors.gaussian import GaussianActor
    from algd.energy import AugmentedLagrangianEnergy
    from algd.module import SafeActorCritic
    from algd.multipliers import LogAdamMultiplier

    actors = {"gaussian": GaussianActor, "diffusion": DiffusionActor, "diffusion_ve": DiffusionVEActor}
    model = SafeActorCritic(obs_dim, act_dim, -torch.ones(act_dim), torch.ones(act_dim), h=2.455, cost_done_mask=False,
                            actor=partial(actors[actor]), energy=AugmentedLagrangianEnergy(),
                            multiplier=LogAdamMultiplier(),
                            # as training builds it (algd.train): fused Adam on CPU, capturable under CUDA graphs
                            optim=partial(torch.optim.Adam, lr=3e-4, capturable=graphs,
                                          fused=True if device == "cpu" else None),
                            cuda_graphs=graphs).to(device)
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts  # outside a Trainer: plain optimisers
    return model


def learner_updates_per_s(actor: str, updates: int, repeats: int, wrap=None, device="cpu", graphs=False) -> float:
    """Median updates/s; ``wrap(model)`` may return a context manager to run the updates in (e.g. autocast)."""
    model = build_learner(actor, device, graphs=graphs)
    batch = _batch(device=device)
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
        update = minimal_sac_update()
    else:
        model, batch = build_learner(actor), _batch()

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

    model, batch = build_learner(actor), _batch()
    model.update(batch)
    with FlopCounterMode(display=False) as counter:
        model.update(batch)
    return int(counter.get_total_flops())


def peak_matmul_gflops(n: int = 2048, dtype=torch.float32, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    return median_rate(lambda: a @ b, 2 * n**3, repeats) / 1e9


def minimal_sac_update(device="cpu"):
    """Plain eager SAC: two separate Q MLPs, a Gaussian actor, fixed α; nothing fused."""
    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                             nn.Linear(256, o)).to(device)
    q1, q2, actor = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1), mlp(OBS, 2 * ACT)
    t1, t2 = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
    t1.load_state_dict(q1.state_dict()), t2.load_state_dict(q2.state_dict())
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
    a_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    b = _batch(device=device)
    obs, act, nobs, rew = b["observation"], b["action"], b["next", "observation"], b["next", "reward"]

    def sample(o):
        mu, log_std = actor(o).chunk(2, -1)
        std = log_std.clamp(-20, 2).exp()
        u = mu + std * torch.randn_like(mu)
        a = torch.tanh(u)
        logp = (torch.distributions.Normal(mu, std).log_prob(u) - torch.log(1 - a.pow(2) + 1e-6)).sum(-1, True)
        return a, logp

    def update():
        with torch.no_grad():
            na, nlogp = sample(nobs)
            x = torch.cat([nobs, na], -1)
            y = rew + 0.99 * (torch.min(t1(x), t2(x)) - 0.2 * nlogp)
        x = torch.cat([obs, act], -1)
        q_loss = ((q1(x) - y) ** 2).mean() + ((q2(x) - y) ** 2).mean()
        q_opt.zero_grad()
        q_loss.backward()
        q_opt.step()
        a, logp = sample(obs)
        x = torch.cat([obs, a], -1)
        a_loss = (0.2 * logp - torch.min(q1(x), q2(x))).mean()
        a_opt.zero_grad()
        a_loss.backward()
        a_opt.step()
        with torch.no_grad():
            for t, s in [(t1, q1), (t2, q2)]:
                for pt, ps in zip(t.parameters(), s.parameters()):
                    pt.lerp_(ps, 0.005)

    return update


def minimal_sac_updates_per_s(updates: int, repeats: int, device="cpu") -> float:
    update = minimal_sac_update(device)
    for _ in range(3):
        update()

    def run():
        for _ in range(updates):
            update()
    return median_rate(run, updates, repeats)


def minimal_sac_flops() -> int:
    from torch.utils.flop_counter import FlopCounterMode

    update = minimal_sac_update()
    with FlopCounterMode(display=False) as counter:
        update()
    return int(counter.get_total_flops())


class RandomActor(nn.Module):
    """An actor whose ``act`` draws uniform actions in [−1, 1]: the collector pays for the training policy wrapper
    (``as_policy``) but not for a network."""

    def __init__(self, act_dim: int):
        super().__init__()
        self.act_dim = act_dim

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return torch.rand(*obs.shape[:-1], self.act_dim) * 2 - 1


def _paper_factory(env_id: str):
    """The Safety-Gym task as the paper protocol builds it (400-step episodes, fixed layout)."""
    from algd.envs import SafetyGymFactory

    return SafetyGymFactory(name=env_id, id=env_id, max_episode_steps=400, cost_limit=10, fixed_layout=True)


def _collect_loop(iterator, frames: int):
    """A function drawing batches from a collector's iterator until ``frames`` frames have come."""
    def loop():
        n = 0
        while n < frames:
            n += next(iterator).numel()
    return loop


def interleaved_rates(loops: dict, count: int, repeats: int) -> dict[str, float]:
    """Every loop once to warm up, then ``repeats`` rounds timing each loop in turn; the median rate of each. A drift
    of the machine's speed during the run hits every loop alike."""
    for loop in loops.values():
        loop()
    rates = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            rates[name].append(median_rate(loop, count, 1))
    return {name: statistics.median(r) for name, r in rates.items()}


def collect_fps(env_id: str, frames: int, repeats: int, frames_per_batch: int = 10,
                workers: int = 2) -> dict[str, float]:
    """Raw safety-gymnasium loop vs the training Collector, interleaved (and ``collector=multi`` with ``workers``
    processes), same env construction (paper protocol)."""
    from algd.actors import as_policy
    from algd.data import make_collector

    factory = _paper_factory(env_id)
    env = factory(0)
    raw = env._env

    def raw_loop():
        raw.reset()
        for _ in range(frames):
            *_, terminated, truncated, _ = raw.step(raw.action_space.sample())
            if terminated or truncated:
                raw.reset()

    policy = as_policy(RandomActor(env.action_spec.shape[-1]))
    collector = make_collector(env, policy, frames_per_batch)
    out = interleaved_rates({"raw_fps": raw_loop, "collector_fps": _collect_loop(iter(collector), frames)}, frames,
                            repeats)
    collector.shutdown()
    env.close()
    out["ratio"] = out["collector_fps"] / out["raw_fps"]
    if workers > 1:  # collector=multi: `workers` env processes stepping together (MultiSyncCollector)
        from functools import partial

        multi = make_collector([partial(factory, i) for i in range(workers)], policy, frames_per_batch * workers)
        loop = _collect_loop(iter(multi), frames)
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
    from algd.data import make_collector

    factory = _paper_factory(env_id)
    envs = {"lean_fps": factory(0), "torchrl_wrapper_fps": TransformedEnv(SafetyGymnasiumWrapper(factory(0)._env),
                                                                          DoubleToFloat())}
    policy = as_policy(RandomActor(envs["lean_fps"].action_spec.shape[-1]))
    collectors = {name: make_collector(env, policy, frames_per_batch) for name, env in envs.items()}
    out = interleaved_rates({name: _collect_loop(iter(c), frames) for name, c in collectors.items()}, frames, repeats)
    for name, collector in collectors.items():
        collector.shutdown()
        envs[name].close()
    out["speedup"] = out["lean_fps"] / out["torchrl_wrapper_fps"]
    return out


def _forloop_adam(model):
    """The learner with torch's for-loop Adam instead of the fused kernel used on CPU."""
    model.optim = partial(model.optim, fused=False)
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts
    return contextlib.nullcontext


def train_fps(actor: str, warmup: int = 300, learn_frames: int = 40, utd: float = 10.0, env: str = "PointButton1",
              device: str = "cpu") -> dict[str, float]:
    """Frames/s and updates/s of the real training loop (DataModule, Lightning Trainer, UTD 10) on PointButton1
    (paper protocol) or the toy env, learner and replay on ``device``, timed from the first learning frame to the
    end; no logger, evaluation or checkpoints."""
    import lightning as L

    from algd.data import RLDataModule
    from algd.envs import ToyFactory, per_step_cost_target

    factory = ToyFactory() if env == "toy" else _paper_factory("SafetyPointButton1-v0")
    dm = RLDataModule(factory, seed=0, total_frames=warmup + learn_frames, warmup_frames=warmup, utd=utd,
                      batch_size=BATCH, frames_per_batch=10, device=device)
    marks: dict[str, tuple[float, int, int]] = {}

    class Timer(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if "start" not in marks and dm.frames > warmup:
                marks["start"] = (time.perf_counter(), dm.frames, dm.updates)

        def on_train_end(self, trainer, pl_module):
            marks["end"] = (time.perf_counter(), dm.frames, dm.updates)

    quiet = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "torchrl")]
    levels = [logger.level for logger in quiet]
    try:
        for logger in quiet:  # Lightning's and TorchRL's one-off notices
            logger.setLevel(logging.WARNING)
        specs = dm.specs()
        model = build_learner(actor, device, obs_dim=specs["obs_dim"], act_dim=specs["act_dim"],
                              graphs=device == "cuda")
        model.h = per_step_cost_target(10, 0.99, 400)
        dm.set_policy(model.actor)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer = L.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1, max_steps=-1, logger=False,
                                callbacks=[Timer()], enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=10**9)
            trainer.fit(model, datamodule=dm)
    finally:
        dm.close()
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    (t0, _, u0), (t1, _, u1) = marks["start"], marks["end"]
    # Each learning frame costs one env step plus ``utd`` updates: frames/s = (updates/s) / utd.
    return {"fps": (u1 - u0) / utd / (t1 - t0), "updates_per_s": (u1 - u0) / (t1 - t0)}


def _autocast_bf16(model):
    return partial(torch.autocast, "cpu", dtype=torch.bfloat16)


def _compile_critics(model):
    for critic in (model.q, model.qc):
        critic.from_features = torch.compile(critic.from_features, dynamic=False)
    return contextlib.nullcontext


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=50, help="updates per timing")
    parser.add_argument("--frames", type=int, default=1200, help="env frames per collection timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--options", action="store_true",
                        help="also time CPU bf16 autocast and torch.compile of the critics (off: slower here)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: learner updates/s on the GPU beside the same on this machine's CPU, and the "
                             "training loop (toy env) with trainer=gpu vs cpu; writes logs/bench/bench_cuda.json")
    parser.add_argument("--out", default=None, help="default: logs/bench/bench.json (bench_cuda.json with --device cuda)")
    args = parser.parse_args()
    from algd.perf import keep_heap

    if args.device == "cuda":
        return gpu_main(args)

    result = {"device": device_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
              "batch_size": BATCH, "obs_dim": OBS, "act_dim": ACT, "keep_heap": keep_heap()}
    print(f"[bench] {result['device']}, {result['threads']} threads; timing the learner ...", flush=True)
    result["peak_matmul_gflops"] = peak_matmul_gflops()
    result["peak_matmul_gflops_bf16"] = peak_matmul_gflops(dtype=torch.bfloat16)
    ups = result["updates_per_s"] = {}
    for _ in range(2):  # two interleaved rounds; the better (less disturbed) median of each is kept
        for name in ["diffusion", "diffusion_ve", "gaussian", "minimal_sac"]:
            rate = (minimal_sac_updates_per_s(args.updates, args.repeats) if name == "minimal_sac"
                    else learner_updates_per_s(name, args.updates, args.repeats))
            ups[name] = max(ups.get(name, 0.0), rate)
    result["update_ms_breakdown"] = {name: update_breakdown(name, args.updates)
                                     for name in ["diffusion", "gaussian", "minimal_sac"]}
    # The ratio to minimal_sac if everything but the matmul kernels took no time at all: the update's matmul-kernel
    # time (the profiler barely slows these large kernels) over minimal_sac's unprofiled update time, same run.
    sac_ms = 1000.0 / ups["minimal_sac"]
    result["matmul_floor_ratio"] = {name: result["update_ms_breakdown"][name]["matmul"] / sac_ms
                                    for name in ["diffusion", "gaussian"]}
    flops = result["flops_per_update"] = {name: flops_per_update(name) for name in ["diffusion", "gaussian"]}
    flops["minimal_sac"] = minimal_sac_flops()
    result["achieved_gflops"] = {name: flops[name] * ups[name] / 1e9 for name in flops}
    if args.options:
        print("[bench] options: bf16 autocast, torch.compile, for-loop Adam, TorchRL's env wrapper ...", flush=True)
        u, r = args.updates, args.repeats
        opts = result["options"] = {}
        for _ in range(2):  # two interleaved rounds, the better median kept (as above)
            for name, rate in [
                    ("diffusion_bf16_autocast", lambda: learner_updates_per_s("diffusion", u, r, _autocast_bf16)),
                    ("diffusion_compile_critics", lambda: learner_updates_per_s("diffusion", u, r, _compile_critics)),
                    ("diffusion_adam_forloop", lambda: learner_updates_per_s("diffusion", u, r, _forloop_adam)),
                    ("diffusion_default", lambda: learner_updates_per_s("diffusion", u, r)),
                    ("gaussian_adam_forloop", lambda: learner_updates_per_s("gaussian", u, r, _forloop_adam)),
                    ("gaussian_default", lambda: learner_updates_per_s("gaussian", u, r))]:
                opts[name] = max(opts.get(name, 0.0), rate())
        result["options_collect"] = {"PointGoal1": collector_wrapper_ab("SafetyPointGoal1-v0", args.frames,
                                                                        args.repeats)}
    result["collect"] = {}
    for name, env_id in [("PointGoal1", "SafetyPointGoal1-v0"), ("PointButton1", "SafetyPointButton1-v0")]:
        print(f"[bench] collection on {env_id} ...", flush=True)
        result["collect"][name] = collect_fps(env_id, args.frames, args.repeats)
    print("[bench] training loop (Lightning, UTD 10) on PointButton1 ...", flush=True)
    loops = {name: train_fps(name) for name in ["diffusion", "gaussian"]}
    result["train_fps"] = {name: loop["fps"] for name, loop in loops.items()}
    result["train_updates_per_s"] = {name: loop["updates_per_s"] for name, loop in loops.items()}
    report(result)
    _write(result, args.out or "logs/bench/bench.json")


def _write(result: dict, path: str) -> None:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n[bench] wrote {out}")


def gpu_main(args) -> None:
    """The learner on CUDA vs this machine's CPU, in one run (batch 256, PointButton1 sizes)."""
    if not torch.cuda.is_available():
        raise SystemExit(f"error: --device cuda: no CUDA device is visible to torch {torch.__version__}")
    from algd.perf import keep_heap

    cpu = device_name_cpu()
    result = {"device": torch.cuda.get_device_name(), "cpu": cpu, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "batch_size": BATCH, "obs_dim": OBS, "act_dim": ACT, "keep_heap": keep_heap()}
    print(f"[bench] {result['device']} vs {cpu} ({result['threads']} threads) ...", flush=True)
    ups = result["updates_per_s"] = {"cuda_graphs": {}, "cuda": {}, "cpu": {}}
    for mode in ups:
        device = "cpu" if mode == "cpu" else "cuda"
        for name in ["diffusion", "diffusion_ve", "gaussian", "minimal_sac"]:
            if name == "minimal_sac" and mode == "cuda_graphs":
                continue
            ups[mode][name] = (minimal_sac_updates_per_s(args.updates, args.repeats, device) if name == "minimal_sac"
                               else learner_updates_per_s(name, args.updates, args.repeats, device=device,
                                                          graphs=mode == "cuda_graphs"))
            print(f"  {mode:<11} {name:<13} {ups[mode][name]:8.1f} updates/s", flush=True)
    print("[bench] training loop on the toy env (UTD 10, trainer=gpu vs cpu) ...", flush=True)
    result["train_toy"] = {f"{name}_{device}": train_fps(name, env="toy", device=device, learn_frames=100)
                           for name in ["diffusion", "gaussian"] for device in ["cuda", "cpu"]}
    print("\nlearner (batch 256, obs 76, act 2)   cuda graphs   cuda eager    cpu   graphs/cpu   minimal_sac(cuda)/x")
    for name in ups["cuda"]:
        g, e, c = ups["cuda_graphs"].get(name, float("nan")), ups["cuda"][name], ups["cpu"][name]
        best = max(g, e) if g == g else e
        print(f"  {name:<34} {g:11.1f}   {e:10.1f}   {c:5.1f}   {g / c:10.2f}   {ups['cuda']['minimal_sac'] / best:8.2f}")
    print("\ntraining loop, toy env, UTD 10:")
    for key, loop in result["train_toy"].items():
        print(f"  {key:<16} {loop['fps']:7.2f} frames/s  {loop['updates_per_s']:7.1f} updates/s")
    _write(result, args.out or "logs/bench/bench_cuda.json")


def report(result: dict) -> None:
    ups, flops = result["updates_per_s"], result["flops_per_update"]
    print(f"\n{result['device']}, {result['threads']} threads, torch {result['torch']}; peak matmul (2048²) "
          f"{result['peak_matmul_gflops']:.0f} GFLOP/s fp32, {result['peak_matmul_gflops_bf16']:.0f} bf16")
    print("\nlearner (batch 256, obs 76, act 2)   updates/s   ms/update   GFLOP/update   GFLOP/s   minimal_sac ratio")
    for name, value in ups.items():
        f = flops.get(name)
        fl = f"{f / 1e9:12.2f}   {f * value / 1e9:7.1f}" if f else f"{'':12}   {'':7}"
        print(f"  {name:<34} {value:9.1f}   {1000 / value:9.1f}   {fl}   {ups['minimal_sac'] / value:8.2f}")
    print("\nupdate breakdown (ms per update, profiled):")
    for name, phases in result["update_ms_breakdown"].items():
        print(f"  {name:<12} " + "  ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    print("  matmul floor (the update's matmul-kernel time alone ÷ minimal_sac's ms/update): "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["matmul_floor_ratio"].items()))
    for name, value in result.get("options", {}).items():
        print(f"  option {name:<28} {value:6.1f} updates/s")
    for name, c in result.get("options_collect", {}).items():
        print(f"  option {name} collector on the lean env {c['lean_fps']:.1f} frames/s vs TorchRL's "
              f"SafetyGymnasiumWrapper + DoubleToFloat {c['torchrl_wrapper_fps']:.1f} ({c['speedup']:.2f}×)")
    print("\ncollection frames/s (random actions, resets included):")
    for name, c in result["collect"].items():
        multi = (f"  multi({c['multi_workers']}) {c['multi_fps']:7.1f} ({c['multi_over_single']:.2f}× single)"
                 if "multi_fps" in c else "")
        print(f"  {name:<12} raw {c['raw_fps']:7.1f}  collector {c['collector_fps']:7.1f}  ratio {c['ratio']:.2f}"
              + multi)
    print("\ntraining loop on PointButton1 (Lightning, UTD 10, after warm-up):")
    for name, fps in result["train_fps"].items():
        inside = result["train_updates_per_s"][name]
        print(f"  {name:<12} {fps:6.2f} frames/s  ({inside:.1f} updates/s inside Lightning)")


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return device_name_cpu()


def device_name_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return "cpu"


if __name__ == "__main__":
    main()
