"""Evaluation: deterministic episodes of the policy (``evaluate``) and the frame-keyed ``Evaluator`` callback."""

from __future__ import annotations

import math
from functools import partial

import torch
from torchrl.envs.utils import ExplorationType, set_exploration_type
from tqdm.auto import tqdm

from algd.actors import acting_copy, load_weights_
from algd.callbacks.frames import EveryFrames, log_scalars
from algd.envs import episode_cost

# Episode seeds are the run's seed plus an offset, so they never coincide with the training env's episodes:
EVAL_SEED_OFFSET = 10_000  # evaluations during training (and their videos)
POLICY_EVAL_SEED_OFFSET = 20_000  # ``algd-eval`` by default: other episodes than the ones training evaluated on


def evaluate(
    policy,
    env,
    episodes: int,
    max_steps: int,
    cost_limit: float | None = None,
    cost_discount: float | None = None,
    calibrate=None,
) -> dict[str, float]:
    """Deterministic episodes; undiscounted return. ``eval/cost`` is the episode cost as the task's limit counts it:
    the plain sum, or with ``cost_discount`` = γ the discounted sum Σ_t γ^t·c_t (then ``eval/cost_undiscounted``
    holds the plain sum too). Returns means and standard deviations and, given the ``cost_limit``, the violation
    rate: the fraction of episodes whose cost exceeds it. ``calibrate(episodes)`` (a list of rollouts) adds its
    scalars (the critics' calibration, :func:`calibration`)."""
    returns, costs, plain_costs, lengths, rollouts = [], [], [], [], []
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            td = env.rollout(max_steps, policy, break_when_any_done=True)
            rollouts.append(td)
            returns.append(td["next", "reward"].sum().item())
            costs.append(episode_cost(td["next", "cost"], cost_discount))
            if cost_discount is not None:  # the plain sum as well (else it is ``costs`` itself)
                plain_costs.append(episode_cost(td["next", "cost"]))
            lengths.append(td.numel())
    r, c = torch.tensor(returns), torch.tensor(costs)
    out = {
        "eval/return": r.mean().item(),
        "eval/cost": c.mean().item(),
        "eval/return_std": r.std(unbiased=False).item(),
        "eval/cost_std": c.std(unbiased=False).item(),
        "eval/length": sum(lengths) / len(lengths),
    }
    if cost_discount is not None:
        out["eval/cost_undiscounted"] = sum(plain_costs) / len(plain_costs)
    if cost_limit is not None:
        out["eval/violation_rate"] = (c > cost_limit).float().mean().item()
    if calibrate is not None:
        out.update(calibrate(rollouts))
    return out


MAX_TAIL = 0.05  # calibration uses the steps t of an episode of T steps where γ^(T − t) ≤ this


def discounted_to_go(x: torch.Tensor, gamma: float, stops: torch.Tensor | None = None) -> torch.Tensor:
    """G_t = Σ_{j ≥ 0} γ^j·x_{t+j} to the episode's end, for a per-step sequence ``x`` [T]; where ``stops`` [T]
    (bool) is given, a sum also ends at the first step s ≥ t with ``stops[s]`` (G_t = x_t + γ·(1 − stops_t)·G_{t+1},
    the bootstrap of a critic whose mask is 0 there)."""
    out, running = torch.empty_like(x), x.new_zeros(())
    for t in reversed(range(x.shape[0])):
        if stops is not None and bool(stops[t]):
            running = x.new_zeros(())
        running = x[t] + gamma * running
        out[t] = running
    return out


def calibration(
    episodes,
    values,
    gamma: float,
    cost_gamma: float,
    cost_done_mask: bool = False,
    reward_done_on_goal: bool = False,
    max_tail: float = MAX_TAIL,
) -> dict[str, float]:
    """How the critics' values at the episodes' own (state, action) pairs compare with what the episodes realised:
    Q̂c(s_t, a_t) against the discounted cost-to-go Σ_j γ_c^j·c_{t+j}, min(Q1, Q2)(s_t, a_t) against the discounted
    return-to-go, pooled over the steps whose realised sum is the critic's whole target: every step of an episode
    that ended in a true termination where the critic stops bootstrapping too (always for the reward critic; for
    the cost critic where ``cost_done_mask``, as on the velocity tasks), else the steps whose realised sum misses at
    most ``max_tail`` of the discount weight (γ^(T − t) ≤ max_tail, T the episode's length: the critics bootstrap
    through the time limit, the realised sums stop there). Where ``reward_done_on_goal`` (the reference's reward
    mask) the reward critic's target also ends at each step where the goal was met (``("next", "goal_met")``): its
    realised sums stop there, and every step up to the episode's last goal counts whole.
    ``values(obs, action)`` → (min-Q, Q̂c), each [T, 1].
    Returns, per critic (``cost``, ``reward``): ``calibration/<c>_q`` (mean value), ``_to_go`` (mean realised),
    ``_error`` (mean of value − realised), ``_abs_error`` and ``_ratio`` (mean value / mean realised, where
    |mean realised| > 1e-3); and ``_steps`` (how many steps were compared). Nothing where no step qualifies
    (episodes cut by the time limit too short for γ: 50 steps at γ = 0.99, for instance)."""
    pairs = {"cost": [], "reward": []}
    for td in episodes:
        steps, q, qc = td.shape[-1], None, None
        terminated = ("next", "terminated") in td.keys(True) and bool(td["next", "terminated"].reshape(-1)[-1])
        goals = None
        if reward_done_on_goal and ("next", "goal_met") in td.keys(True):
            goals = td["next", "goal_met"].reshape(-1).bool()
        # per critic: its discount, whether a termination stops it, the steps where its target ends inside the episode
        for name, discount, stops, ends in (("cost", cost_gamma, cost_done_mask, None), ("reward", gamma, True, goals)):
            if terminated and stops:
                last = steps - 1
            else:
                last = steps - math.ceil(math.log(max_tail) / math.log(discount)) if discount < 1 else -1
            if ends is not None and bool(ends.any()):
                last = max(last, int(ends.nonzero()[-1]))
            if last < 0:
                continue
            if q is None:
                q, qc = values(td["observation"], td["action"])
            value = (qc if name == "cost" else q).reshape(-1)[: last + 1]
            realised = discounted_to_go(td["next", name].reshape(-1).float(), discount, ends)[: last + 1]
            pairs[name].append((value, realised))
    out: dict[str, float] = {}
    for name, got in pairs.items():
        if not got:
            continue
        value, realised = torch.cat([v for v, _ in got]), torch.cat([r for _, r in got])
        out[f"calibration/{name}_q"] = value.mean().item()
        out[f"calibration/{name}_to_go"] = realised.mean().item()
        out[f"calibration/{name}_error"] = (value - realised).mean().item()
        out[f"calibration/{name}_abs_error"] = (value - realised).abs().mean().item()
        if abs(realised.mean().item()) > 1e-3:
            out[f"calibration/{name}_ratio"] = value.mean().item() / realised.mean().item()
        out[f"calibration/{name}_steps"] = float(value.numel())
    return out


def refreshed_copy(copy: torch.nn.Module | None, actor: torch.nn.Module) -> torch.nn.Module:
    """A CPU acting copy of the learner's ``actor`` for evaluation: made on first use, then refreshed in place."""
    if copy is None:
        return acting_copy(actor).eval()
    load_weights_(copy, actor)
    return copy


class Evaluator(EveryFrames):
    """Every ``every_frames`` (and at the end of training) run ``episodes`` deterministic episodes on a separate
    env and log ``eval/return``, ``eval/cost`` (γ-discounted where ``info.eval_cost_discount`` is set) and the
    critics' calibration along those episodes (``calibration/*``, :func:`calibration`).

    Each evaluation re-seeds its env and its random numbers with ``seed + EVAL_SEED_OFFSET`` (the run's seed, from
    the DataModule) inside a forked RNG: every
    evaluation sees the same episodes, and evaluating never changes the training run's random stream (so a run
    that evaluates at other frames, or a resumed one, trains identically)."""

    per_member = True  # a population runs one per member (algd.callbacks.population)

    def __init__(self, every_frames: int, episodes: int = 5):
        super().__init__(every_frames)
        self.episodes = int(episodes)
        self.env_factory = self.info = self.seed = None  # the training task's, from the DataModule at setup
        self.env = None
        self.actor = None  # a CPU copy of the learner's actor, refreshed before each evaluation
        self.last: dict[str, float] = {}
        self.label = ""  # a population member's: " seed <s>" (printed with each evaluation)

    def setup(self, trainer, pl_module, stage):
        self.env_factory, self.seed = trainer.datamodule.env_factory, trainer.datamodule.seed
        self.info = self.env_factory.info

    def fire(self, trainer, pl_module, frames):
        if self.episodes <= 0:
            return
        seed = self.seed + EVAL_SEED_OFFSET
        if self.env is None:
            self.env = self.env_factory(seed)
        self.actor = refreshed_copy(self.actor, pl_module.actor)
        gamma, cost_gamma = pl_module.gamma, pl_module.cost_gamma
        with torch.random.fork_rng(devices=[]):  # the copy acts on CPU
            torch.manual_seed(seed)
            self.env.reseed(seed)
            self.last = evaluate(
                self.actor.policy(),
                self.env,
                self.episodes,
                self.info.episode_length,
                self.info.cost_limit,
                self.info.eval_cost_discount,
                partial(
                    calibration,
                    values=pl_module.critic_values,
                    gamma=gamma,
                    cost_gamma=cost_gamma,
                    cost_done_mask=pl_module.cost_done_mask,
                    reward_done_on_goal=pl_module.reward_done_on_goal,
                ),
            )
        log_scalars(trainer, self.last, frames)
        tqdm.write(
            f"[eval{self.label}] frames {frames}: return {self.last['eval/return']:.2f} "
            f"± {self.last['eval/return_std']:.2f}"
            f"  cost {self.last['eval/cost']:.2f} ± {self.last['eval/cost_std']:.2f}"
            f"  (limit {self.info.cost_limit:g}{' discounted' if self.info.eval_cost_discount else ''}, "
            f"{self.episodes} episodes)"
        )

    def on_train_end(self, trainer, pl_module):
        frames = trainer.datamodule.frames
        stopped = trainer.should_stop  # stopped early (a signal): the resumed run evaluates at the budget's end
        if not stopped and (not self.last or self._next is None or frames > self._next - self.every_frames):
            self.fire(trainer, pl_module, frames)
        if self.env is not None:
            self.env.close()
            self.env = None
