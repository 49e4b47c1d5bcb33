"""The yardstick: a deliberately plain eager SAC update (twin Q 2×256, Gaussian actor 2×256, fixed α), timed and
counted like the learner's update so the two compare within one run."""

from __future__ import annotations

import torch
from torch import nn

from algd.bench.learner import ACT, OBS, random_batch
from algd.bench.timing import median_rate


def minimal_sac_update(device="cpu"):
    """Plain eager SAC: two separate Q MLPs, a Gaussian actor, fixed α; nothing fused."""

    def mlp(i, o):
        return nn.Sequential(nn.Linear(i, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, o)).to(device)

    q1, q2, actor = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1), mlp(OBS, 2 * ACT)
    t1, t2 = mlp(OBS + ACT, 1), mlp(OBS + ACT, 1)
    t1.load_state_dict(q1.state_dict()), t2.load_state_dict(q2.state_dict())
    q_opt = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=3e-4)
    a_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    b = random_batch(device=device)
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
