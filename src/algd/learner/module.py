"""The learner: a LightningModule with manual optimisation (spec §2, §6, §7).

``update(batch)`` is "batch in, losses out" and never touches an environment. One update, in order:
reward critics → cost-critic ensemble → actor → λ → Polyak targets (every ``polyak_every`` updates).

``training_step`` pulls its batch from the loader itself (Lightning's ``dataloader_iter`` signature) instead of
receiving a prefetched one: the data pipeline (collection, sampling, counters, RNG draws) then never runs ahead of
the update, so a checkpoint taken between two updates is an exact cut and a resumed run continues bit for bit.

On CUDA with ``cuda_graphs`` (``trainer=gpu``), the update is captured once as a CUDA graph (:class:`GraphedUpdate`)
and replayed for every batch: an ALGD update is ~1,000 small kernels whose launch cost, not arithmetic, bounds an
eager GPU update. With ``trainer.updates_per_graph`` = k > 1 the loader hands over k updates at a time
(:class:`~algd.data.replay.Updates`) and one graph replays them with their replay sampling (:meth:`update_many`):
no host sync inside the k updates.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import contextmanager, nullcontext

import lightning as L
import torch
from tensordict import TensorDictBase
from torch import nn
from torch.profiler import record_function

from algd import checks, schema
from algd.data.replay import Updates
from algd.learner import constraint, perf
from algd.learner.graphs import LOSSES, GraphedUpdate, GraphedUpdates
from algd.learner.nets import QEnsemble, polyak_
from algd.learner.population import batch_mean, per_row


@contextmanager
def frozen(*modules: nn.Module):
    """Turn off parameter gradients (so an actor loss never writes into critic parameters)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN/Inf. Raised before the offending optimiser step, so the parameters are still the last
    finite ones (unless a finite loss produced non-finite gradients; the checkpointer checks before saving)."""

    def __init__(self, name: str, value: float, update: int):
        self.name, self.value, self.update = name, float(value), int(update)
        super().__init__(f"non-finite {name} ({value}) at update {update}")


def _check_finite(update: int, **losses: torch.Tensor) -> None:
    """One host sync for several losses; names the first non-finite one."""
    values = torch.stack([v.detach() for v in losses.values()])
    if not bool(torch.isfinite(values).all()):
        name, value = next((k, v) for k, v in losses.items() if not torch.isfinite(v))
        raise NonFiniteLossError(name, value.item(), update)


class SafeActorCritic(L.LightningModule):
    """Twin reward critics, a batched cost-critic ensemble (size ``ensemble``, risk coefficient ``k``), an actor
    (any module of the :mod:`algd.actors` contract) and a Lagrange multiplier, each with its own optimiser; the
    energy guides the actor.

    Reward target:  y  = r + γ·(1 − terminated)·(min(Q1', Q2')(s', a') + bonus),   a' ~ π(s')
    Cost target:    yc = c + γ_c·mask_c·Qc_e'(s', a')  per member e  (mask_c ≡ 1 unless ``cost_done_mask``)
    Losses: sum over members of the members' MSEs (``cost_loss_reduction=mean``: the cost ensemble's mean, the
    reference's; under Adam the two differ only through its ε, by up to 8 % of one step on parameters whose gradient
    is ~1e-7, docs/parity.md).

    Two switches select the reference code's behaviour (docs/parity.md): ``reward_done_on_goal`` also ends the
    reward bootstrap where the task's goal was met (``goal_met``, Safety-Gym tasks; the cost bootstrap goes on), and
    ``lambda_qc=after_update`` takes λ's Q̂c from the cost critics after their step and the actor's (ours: from
    the forward before their step).
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        h: float,
        cost_done_mask: bool,
        actor: nn.Module,
        energy: nn.Module,
        multiplier: nn.Module,
        optim: Callable[..., torch.optim.Optimizer],
        critic_hidden=(256, 256),
        cost_hidden=(256, 256),
        ensemble: int = 4,
        k: float = 1.0,
        gamma: float = 0.99,
        cost_gamma: float = 0.99,
        tau: float = 0.005,
        polyak_every: int = 2,
        grad_clip: float | None = None,
        keep_heap: bool = True,
        cuda_graphs: bool = False,
        reward_done_on_goal: bool = False,
        lambda_qc: str = "before_update",
        cost_loss_reduction: str = "sum",
        precision: str = "32-true",
        population: int = 1,
    ):
        super().__init__()
        checks.enforce(
            schema.LEARNER,
            "model",
            reward_done_on_goal=reward_done_on_goal,
            lambda_qc=lambda_qc,
            cost_loss_reduction=cost_loss_reduction,
            precision=precision,
        )
        self.precision, self.population = precision, int(population)
        if self.population != getattr(actor, "population", 1):
            raise ValueError(f"the actor was built for a population of {actor.population}, not {self.population}")
        if self.population > 1 and grad_clip:
            raise ValueError("grad_clip is not available for a population (one norm would couple its learners)")
        self.reward_done_on_goal, self.lambda_qc = bool(reward_done_on_goal), lambda_qc
        self.cost_loss_reduction = cost_loss_reduction
        # keep_heap: ≈ 20 % faster updates on CPU, no page faults on every fresh activation tensor (algd.learner.perf)
        if keep_heap:
            perf.keep_heap()
        self.automatic_optimization = False
        self.actor = actor  # built for the env's sizes and bounds by the caller (algd.build.build_learner)
        pop = self.population
        self.q = QEnsemble(obs_dim + act_dim, 1, list(critic_hidden), members=2, act="relu", population=pop)
        self.qc = QEnsemble(obs_dim + act_dim, 1, list(cost_hidden), members=int(ensemble), act="silu", population=pop)
        self.q_target, self.qc_target = copy.deepcopy(self.q), copy.deepcopy(self.qc)
        for p in [*self.q_target.parameters(), *self.qc_target.parameters()]:
            p.requires_grad_(False)
        self.energy, self.multiplier, self.optim = energy, multiplier, optim
        self.h, self.k, self.cost_done_mask = float(h), float(k), bool(cost_done_mask)
        self.gamma, self.cost_gamma, self.tau = float(gamma), float(cost_gamma), float(tau)
        self.polyak_every, self.grad_clip = int(polyak_every), grad_clip
        self.updates = 0
        self.cuda_graphs = bool(cuda_graphs)
        self._graphed: GraphedUpdate | None = None
        self._chunks: dict[tuple[int, int], GraphedUpdates] = {}  # (k, Polyak phase) → k updates in one graph
        self._own_optimizers: list[torch.optim.Optimizer] | None = None
        self._keys: list[str] = []
        self._sum: torch.Tensor | None = None
        self._count = 0

    # ----------------------------------------------------------------------------------------------- optimisers
    def configure_optimizers(self):
        """Adam for reward critics, cost ensemble and actor, plus one for the multiplier if it has parameters."""
        groups = [list(m.parameters()) for m in (self.q, self.qc, self.actor, self.multiplier)]
        return [self.optim(params=g) for g in groups if g]

    def standalone(self) -> SafeActorCritic:
        """Make :meth:`update` usable outside a Lightning ``Trainer`` (benchmarks, tests): it then steps optimisers
        of its own, built by :meth:`configure_optimizers`. Returns the learner."""
        self._own_optimizers = self.configure_optimizers()
        return self

    def optimizer_list(self) -> list:
        """The optimisers ``update`` steps: the Trainer's, or the learner's own after :meth:`standalone`."""
        return self._own_optimizers if self._own_optimizers is not None else self.optimizers()

    def _step(self, opt, loss: torch.Tensor, params) -> None:
        # Plain backward and clipping rather than Lightning's manual_backward / clip_gradients: the update also runs
        # outside a Trainer (benchmarks, parity tests) and inside a CUDA-graph capture, where those need a strategy.
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        opt.step()

    # ------------------------------------------------------------------------------------------------ the update
    def autocast(self):
        """The context of the update's forward passes: bf16 autocast under ``precision=bf16-mixed`` (matmuls of the
        hidden layers in bf16; parameters, optimiser states, λ, output layers, targets and losses in fp32), else
        nothing. Backward passes and optimiser steps run outside it."""
        if self.precision != "bf16-mixed":
            return nullcontext()
        # (autocast's cast cache must stay off in a CUDA-graph capture)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.cuda_graphs)

    def energy_fn(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Per-sample energy E(s, a) with the online critics and the current (detached) λ: obs [B, obs],
        action [..., B, act] (leading sample axes share the states) → [..., B, 1]."""
        return self.energy_for(obs)(obs, action)

    def energy_for(
        self, states: torch.Tensor, seen: dict | None = None
    ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """``energy_fn`` for these states, with the critics' state part of the first layer computed once and reused by
        every call (the actor's energy at a⁰ and at its N Monte-Carlo samples). ``seen``: receives the gap g
        (detached) of the call at the policy's own actions, the one whose action has no leading sample axis, and
        where the energy's penalty is active there (``active``, with the λ that call used)."""
        features = self.q.state_features(states), self.qc.state_features(states)
        lam = per_row(self.multiplier.lam.detach())

        def energy_fn(obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            if obs is not states:
                raise ValueError("energy_for(states) only evaluates actions at those states")
            q = self.q.from_features(features[0], action).min(0).values
            g = constraint.gap(self.qc.from_features(features[1], action), self.k, self.h)
            if seen is not None and action.dim() == states.dim():
                seen["g"], seen["active"] = g.detach(), self.energy.active(g.detach(), lam)
            return self.energy(q, g, lam)

        return energy_fn

    def critic_values(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(min(Q1, Q2), Q̂c) of the online critics at env-scale ``action`` [..., B, act] (no gradient, fp32, on the
        learner's device; returned on the inputs' device): what the energy sees, for calibration against realised
        returns (:func:`algd.callbacks.evaluation.calibration`)."""
        with torch.no_grad():
            o, a = obs.to(self.device), action.to(self.device)
            q = self.q(o, a).min(0).values
            qc = constraint.risk_adjusted(self.qc(o, a), self.k)
        return q.to(obs.device), qc.to(obs.device)

    def training_step(self, dataloader_iter) -> dict[str, torch.Tensor] | None:
        batch, _, _ = next(dataloader_iter)  # StopIteration ends the epoch: the frame budget is spent
        if batch is None:  # a collection tick without a due update (warm-up)
            return None
        if isinstance(batch, Updates):  # k updates, their batches drawn on the device (trainer.updates_per_graph)
            return self.update_many(batch.sample, batch.count)
        return self.update(batch.to(self.device, non_blocking=True))

    def update(self, batch: TensorDictBase) -> dict[str, torch.Tensor]:
        """One full update on a replay batch; raises :class:`NonFiniteLossError` on a NaN/Inf loss (eager: before the
        offending step; CUDA graph: after the replayed update)."""
        if self.cuda_graphs and self.device.type == "cuda":
            if self._graphed is None:
                self._graphed = GraphedUpdate(self, batch)
            metrics = self._graphed(batch)
            _check_finite(self.updates, **{k: metrics[k] for k in LOSSES})
        else:
            metrics = self.learn(batch, self.optimizer_list(), check=True)
        self.updates += 1
        if self.updates % self.polyak_every == 0:
            with record_function("polyak"):
                self.polyak()
        self._accumulate(metrics)
        return metrics

    def polyak(self) -> None:
        """Target critics ← (1 − τ)·targets + τ·online critics (every ``polyak_every`` updates)."""
        polyak_(self.q_target, self.q, self.tau)
        polyak_(self.qc_target, self.qc, self.tau)

    def update_many(self, sample: Callable[[], TensorDictBase], k: int) -> dict[str, torch.Tensor] | None:
        """``k`` updates, each on a fresh batch ``sample()`` draws on the learner's device
        (:class:`~algd.data.replay.DeviceSampler`). On CUDA with ``cuda_graphs``: one captured graph (one per phase
        of the Polyak schedule) replays all k, sampling included, and their losses are checked for NaN/Inf once,
        after it (:class:`NonFiniteLossError` names the first non-finite one; the checkpointer then saves only
        finite parameters); elsewhere k eager updates, each checked before its steps."""
        if not (self.cuda_graphs and self.device.type == "cuda"):
            metrics = None
            for _ in range(k):
                metrics = self.update(sample())
            return metrics
        key = (int(k), self.updates % self.polyak_every)
        if key not in self._chunks:
            self._chunks[key] = GraphedUpdates(self, sample, *key)
        total, losses = self._chunks[key]()
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            step, column = (~finite).nonzero()[0].tolist()
            raise NonFiniteLossError(LOSSES[column], losses[step, column].item(), self.updates + step)
        self.updates += k
        self._add(total, k)
        return None

    def learn(self, batch: TensorDictBase, optimizers, check: bool) -> dict[str, torch.Tensor]:
        """Critics → cost ensemble → actor → λ on one batch (everything of an update but the counter and the
        Polyak averaging). ``check``: raise :class:`NonFiniteLossError` before a step on a NaN/Inf loss (host syncs;
        off inside a CUDA graph capture, where the caller checks the replayed losses)."""
        opt_q, opt_qc, opt_actor, *opt_lam = optimizers
        obs, action = batch["observation"], batch["action"]
        nxt = batch["next"]
        next_obs, reward = nxt["observation"], nxt["reward"]
        cost = nxt["cost"].reshape(reward.shape)
        terminated = nxt["terminated"].reshape(reward.shape)
        not_term = 1.0 - terminated.float()
        cost_mask = not_term if self.cost_done_mask else torch.ones_like(not_term)
        goal = nxt.get("goal_met", None) if self.reward_done_on_goal else None  # (no such key: no goal is met)
        if goal is not None:
            not_term = 1.0 - (terminated | goal.reshape(reward.shape)).float()

        # Named phases (record_function: free unless a profiler runs) give `make bench` its time breakdown.
        with record_function("targets"), torch.no_grad(), self.autocast():
            next_action, bonus = self.actor.target_action(next_obs)
            y = reward + self.gamma * not_term * (self.q_target(next_obs, next_action).min(0).values + bonus)
            yc = cost + self.cost_gamma * cost_mask * self.qc_target(next_obs, next_action)

        with record_function("critic"), self.autocast():
            q = self.q(obs, action)
            critic_loss = batch_mean((q - y).square()).sum(0)  # per learner: the sum of its twins' MSEs
        with record_function("cost_critic"), self.autocast():
            qc = self.qc(obs, action)
            cost_loss = batch_mean((qc - yc).square())
            cost_loss = cost_loss.mean(0) if self.cost_loss_reduction == "mean" else cost_loss.sum(0)
        if check:
            _check_finite(self.updates, **{"loss/critic": critic_loss.sum(), "loss/cost_critic": cost_loss.sum()})
        with record_function("critic"):
            self._step(opt_q, critic_loss.sum(), self.q.parameters())
        with record_function("cost_critic"):
            self._step(opt_qc, cost_loss.sum(), self.qc.parameters())

        with record_function("actor"):
            seen: dict[str, torch.Tensor] = {}
            with frozen(self.q, self.qc), self.autocast():
                actor_loss, actor_metrics = self.actor.loss(obs, self.energy_for(obs, seen))
            if check:
                _check_finite(self.updates, **{"loss/actor": actor_loss.sum()})
            self._step(opt_actor, actor_loss.sum(), self.actor.parameters())

        with record_function("multiplier"):
            # λ from replay actions; Q̂c from the cost critics' forward above (before their step), or after it
            if self.lambda_qc == "after_update":
                with torch.no_grad(), self.autocast():
                    qc = self.qc(obs, action)
            g = constraint.gap(qc.detach(), self.k, self.h)
            lam_loss = self.multiplier.update(g, opt_lam[0] if opt_lam else None)

        return {
            "loss/critic": critic_loss.detach(),
            "loss/cost_critic": cost_loss.detach(),
            "loss/actor": actor_loss.detach(),
            "loss/lambda": lam_loss,
            "lagrange/lambda": self.multiplier.lam.detach(),
            "lagrange/qc_hat": batch_mean(g + self.h),
            "lagrange/violation": constraint.violation(g),
            "train/q": q.detach().mean((0, -2, -1)),
            **self._policy_gap_metrics(seen),
            "replay/cost": batch_mean(cost),
            **({"replay/cost_stops": batch_mean(1.0 - cost_mask)} if self.cost_done_mask else {}),
            **actor_metrics,
        }

    def _policy_gap_metrics(self, seen: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Q̂c at the policy's own actions (``lagrange/qc_hat`` is at the replay's) and the fraction of states where
        the energy's penalty acts on the action (``penalty_active``: λ + ρ·g > 0 for the augmented energy), from
        the actor's energy call at a⁰ (λ as the actor saw it, before this update's λ step)."""
        if "g" not in seen:  # an actor that never evaluates the energy at batch-shaped actions
            return {}
        return {
            "lagrange/qc_hat_policy": batch_mean(seen["g"] + self.h),
            "lagrange/penalty_active": batch_mean(seen["active"].float()),
        }

    def lagrange_multiplier(self, member: int | None = None) -> float:
        """The current λ (one host sync); of a population's ``member``, or the mean over its members."""
        lam = self.multiplier.lam.detach().reshape(-1)
        return (lam.mean() if member is None else lam[member]).item()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["updates"] = self.updates
        checkpoint["precision"] = self.precision  # a resumed ``auto`` run keeps it (algd.build.keep_precision)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.updates = int(checkpoint.get("updates", 0))

    # -------------------------------------------------------------------------------------------------- metrics
    def metric_vector(self, metrics: dict[str, torch.Tensor]) -> torch.Tensor:
        """An update's metrics as one stacked tensor (their names in ``_keys``), summed on the device until logged."""
        self._keys = list(metrics)
        return torch.stack([v.float() for v in metrics.values()])

    def _accumulate(self, metrics: dict[str, torch.Tensor]) -> None:
        self._add(self.metric_vector(metrics), 1)

    def _add(self, total: torch.Tensor, count: int) -> None:
        """``total``: the sum of ``count`` updates' metric vectors (a graph's output: read, not kept)."""
        self._sum = total.clone() if self._sum is None else self._sum + total
        self._count += count

    def pop_metrics(self) -> dict[str, float]:
        """Means of the metrics since the last call (one host sync, at logging time only)."""
        if self.population != 1:
            raise TypeError("a population's metrics are per member: pop_member_metrics()")
        return self.pop_member_metrics()[0]

    def pop_member_metrics(self) -> list[dict[str, float]]:
        """:meth:`pop_metrics` of each learner of a population (a list of one for a single learner)."""
        if not self._count:
            return [{} for _ in range(self.population)]
        values = (self._sum / self._count).reshape(len(self._keys), -1).T.tolist()  # [learners][metrics]
        keys, self._sum, self._count = self._keys, None, 0
        return [{**dict(zip(keys, member)), "lagrange/h": self.h} for member in values]
