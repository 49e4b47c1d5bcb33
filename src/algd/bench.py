"""Benchmarks (``make bench``): every ratio is measured within one run, since these machines vary ±30–50 %.

- ``collect``: raw safety-gymnasium steps/s (random actions, resets included) vs the TorchRL ``Collector`` used by
  training (same env, a policy returning random actions), on PointGoal1 and PointButton1 (paper protocol).
- ``updates_per_s``: the learner's full update (``SafeActorCritic.update``) per actor, and ``minimal_sac``,
  a deliberately plain eager SAC update (twin Q 2×256, Gaussian actor 2×256) kept as a yardstick.
Each timing is repeated and the median reported. Writes ``logs/bench/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn

OBS, ACT, BATCH = 76, 2, 256  # PointButton1 sizes


def median_rate(fn, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def _batch(batch: int = BATCH) -> TensorDict:
    return TensorDict({"observation": torch.randn(batch, OBS), "action": torch.rand(batch, ACT) * 2 - 1,
                       "next": {"observation": torch.randn(batch, OBS), "reward": torch.randn(batch, 1),
                                "cost": torch.rand(batch), "terminated": torch.zeros(batch, 1, dtype=torch.bool),
                                "done": torch.zeros(batch, 1, dtype=torch.bool)}}, [batch])


def learner_updates_per_s(actor: str, updates: int, repeats: int) -> float:
    from algd.actors.diffusion import DiffusionActor, DiffusionVEActor
    from algd.actors.gaussian import GaussianActor
    from algd.energy import AugmentedLagrangianEnergy
    from algd.module import SafeActorCritic
    from algd.multipliers import LogAdamMultiplier

    actors = {"gaussian": GaussianActor, "diffusion": DiffusionActor, "diffusion_ve": DiffusionVEActor}
    model = SafeActorCritic(OBS, ACT, -torch.ones(ACT), torch.ones(ACT), h=2.455, cost_done_mask=False,
                            actor=partial(actors[actor]), energy=AugmentedLagrangianEnergy(),
                            multiplier=LogAdamMultiplier(), optim=partial(torch.optim.Adam, lr=3e-4))
    opts = model.configure_optimizers()
    model.optimizers = lambda: opts  # outside a Trainer: plain optimisers
    batch = _batch()
    for _ in range(3):
        model.update(batch)

    def run():
        for _ in range(updates):
            model.update(batch)
    return median_rate(run, updates, repeats)


def minimal_sac_updates_per_s(updates: int, repeats: int) -> float:
    """Plain eager SAC: two separate Q MLPs, a Gaussian actor, fixed α; nothing fused."""
    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, o))
    q1, q2, actor = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1), mlp(OBS, 2 * ACT)
    t1, t2 = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
    t1.load_state_dict(q1.state_dict()), t2.load_state_dict(q2.state_dict())
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
    a_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    b = _batch()
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

    for _ in range(3):
        update()

    def run():
        for _ in range(updates):
            update()
    return median_rate(run, updates, repeats)


class _RandomPolicy(nn.Module):
    def __init__(self, act_dim: int):
        super().__init__()
        self.act_dim = act_dim

    def forward(self, observation):
        return torch.rand(*observation.shape[:-1], self.act_dim) * 2 - 1


def collect_fps(env_id: str, frames: int, repeats: int, frames_per_batch: int = 10) -> dict[str, float]:
    """Raw safety-gymnasium loop vs the training Collector, same env construction (paper protocol)."""
    from torchrl.collectors import Collector

    from algd.envs import SafetyGymFactory

    factory = SafetyGymFactory(name=env_id, id=env_id, max_episode_steps=400, cost_limit=10, fixed_layout=True)
    env = factory(0)
    raw = env.base_env._env

    def raw_loop():
        raw.reset()
        for _ in range(frames):
            *_, terminated, truncated, _ = raw.step(raw.action_space.sample())
            if terminated or truncated:
                raw.reset()

    policy = TensorDictModule(_RandomPolicy(env.action_spec.shape[-1]), in_keys=["observation"], out_keys=["action"])
    collector = Collector(env, policy, frames_per_batch=frames_per_batch, total_frames=-1, trust_policy=True,
                          auto_register_policy_transforms=False)
    iterator = iter(collector)

    def collector_loop():
        n = 0
        while n < frames:
            n += next(iterator).numel()

    raw_loop()  # warm caches and compile paths once for both
    collector_loop()
    out = {"raw_fps": median_rate(raw_loop, frames, repeats), "collector_fps": median_rate(collector_loop, frames,
                                                                                            repeats)}
    collector.shutdown()
    env.close()
    out["ratio"] = out["collector_fps"] / out["raw_fps"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=50, help="updates per timing")
    parser.add_argument("--frames", type=int, default=1200, help="env frames per collection timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="logs/bench/bench.json")
    args = parser.parse_args()
    result = {"device": "cpu", "threads": torch.get_num_threads(), "batch_size": BATCH, "obs_dim": OBS}
    print(f"[bench] threads {result['threads']}; timing the learner ...", flush=True)
    result["updates_per_s"] = {name: learner_updates_per_s(name, args.updates, args.repeats)
                               for name in ["diffusion", "diffusion_ve", "gaussian"]}
    result["updates_per_s"]["minimal_sac"] = minimal_sac_updates_per_s(args.updates, args.repeats)
    result["collect"] = {}
    for name, env_id in [("PointGoal1", "SafetyPointGoal1-v0"), ("PointButton1", "SafetyPointButton1-v0")]:
        print(f"[bench] collection on {env_id} ...", flush=True)
        result["collect"][name] = collect_fps(env_id, args.frames, args.repeats)
    ups = result["updates_per_s"]
    print("\nlearner updates/s (batch 256, obs 76):")
    for name, value in ups.items():
        print(f"  {name:<12} {value:8.1f}  ({1000 / value:6.1f} ms/update)")
    for name in ["diffusion", "diffusion_ve", "gaussian"]:
        print(f"  minimal_sac / {name} = {ups['minimal_sac'] / ups[name]:.2f}")
    print("\ncollection frames/s (random actions, resets included):")
    for name, c in result["collect"].items():
        print(f"  {name:<12} raw {c['raw_fps']:7.1f}  collector {c['collector_fps']:7.1f}  ratio {c['ratio']:.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n[bench] wrote {out}")


if __name__ == "__main__":
    main()
