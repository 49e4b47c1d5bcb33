"""A population (``seeds=[...]``) in the callbacks: every member is logged, evaluated and saved as an ordinary run in
a directory of its own (its TensorBoard events, ``.hydra/``, ``status.json`` and a weights-only
``checkpoints/last.ckpt``), so reports, ``algd-eval`` and sweep summaries read members as runs.

The callbacks that describe one agent (``per_member = True``: the frame logger, the evaluator, the video recorder)
run once per member through :class:`Population`, each seeing the member through a view of the trainer, the
DataModule and the learner with the interface it reads from a single run's (``frames``, ``seed``,
``pop_finished_episodes()``, ``recent_episodes()``; ``updates``, ``pop_metrics()``, ``lagrange_multiplier()``,
``actor``, ``critic_values``, ``gamma``, ``cost_gamma``, ``cost_done_mask``, ``reward_done_on_goal``; ``logger``,
``should_stop``). The others (checkpointer, progress bar, signals) see the population.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L

from algd.learner.population import member_state_dict


@dataclass
class Member:
    """Member ``index`` of a population: its seed, its run directory and its TensorBoard logger."""

    index: int
    seed: int
    dir: Path
    logger: object


class MemberData:
    """The DataModule as member ``index`` sees it: its seed, its episodes, its replay buffer."""

    def __init__(self, dm, index: int):
        self._dm, self.index = dm, index

    def __getattr__(self, name):  # frames, total_frames, frames_per_batch, collect_seconds, env_factory, ...
        return getattr(self._dm, name)

    @property
    def seed(self) -> int:
        return self._dm.seeds[self.index]

    @property
    def replay_size(self) -> int:
        return len(self._dm.streams[self.index])

    def pop_finished_episodes(self):
        return self._dm.pop_finished_episodes(self.index)

    def recent_episodes(self):
        return self._dm.recent_episodes(self.index)


class MemberLearner:
    """The learner as member ``index`` sees it: its metrics, its λ, its actor and critics (single-learner copies)."""

    def __init__(self, population: Population, index: int):
        self._population, self.index = population, index

    @property
    def updates(self) -> int:
        return self._population.learner.updates

    @property
    def actor(self):
        """The member's actor, copied into the single-learner template (read it before asking another member's)."""
        self._population.load_member(self.index)
        return self._population.single.actor

    @property
    def critic_values(self):
        """The member's ``critic_values(obs, action)`` (its critics copied into the template, as :attr:`actor`)."""
        self._population.load_member(self.index)
        return self._population.single.critic_values

    @property
    def gamma(self) -> float:
        return self._population.learner.gamma

    @property
    def cost_gamma(self) -> float:
        return self._population.learner.cost_gamma

    @property
    def cost_done_mask(self) -> bool:
        return self._population.learner.cost_done_mask

    @property
    def reward_done_on_goal(self) -> bool:
        return self._population.learner.reward_done_on_goal

    def pop_metrics(self) -> dict[str, float]:
        return self._population.member_metrics(self.index)

    def lagrange_multiplier(self) -> float:
        return self._population.learner.lagrange_multiplier(self.index)


class MemberTrainer:
    """The Trainer as member ``index`` sees it: its DataModule view, its learner view, its logger."""

    def __init__(self, trainer: L.Trainer, datamodule: MemberData, learner: MemberLearner, logger):
        self._trainer, self.datamodule, self.lightning_module, self.logger = trainer, datamodule, learner, logger

    @property
    def should_stop(self) -> bool:
        return self._trainer.should_stop


class Population(L.Callback):
    """Runs each member's copy of the per-member callbacks (``callbacks[s]`` for member s) on the member's views;
    holds a single-learner ``single`` (the model a single run builds) to read a member's weights into."""

    HOOKS = ("on_train_start", "on_train_end", "on_exception")

    def __init__(self, members: list[Member], callbacks: list[list[L.Callback]], single):
        self.members, self.callbacks, self.single = members, callbacks, single
        self.learner = None
        self.views: list[tuple[MemberTrainer, MemberLearner]] = []
        self._metrics: list[dict | None] = [None] * len(members)

    # -------------------------------------------------------------------------------------------- the views
    def setup(self, trainer, pl_module, stage):
        self.learner = pl_module
        self.views = []
        for m in self.members:
            learner = MemberLearner(self, m.index)
            self.views.append(
                (MemberTrainer(trainer, MemberData(trainer.datamodule, m.index), learner, m.logger), learner)
            )
        self._each("setup", stage)

    def trainers(self) -> list[MemberTrainer]:
        return [view for view, _ in self.views]

    def load_member(self, index: int) -> None:
        member_state_dict(self.learner, self.single, index)

    def member_metrics(self, index: int) -> dict[str, float]:
        """Member ``index``'s metrics since the last logging point: the population's are popped once for all."""
        if self._metrics[index] is None:
            self._metrics = self.learner.pop_member_metrics()
        metrics, self._metrics[index] = self._metrics[index], None
        return metrics

    def member_checkpoints(self, trainer, name: str):
        """(path, weights-only checkpoint) of every member, ``<member dir>/checkpoints/<name>``: the member's
        weights as a single run's checkpoint holds them, its frame and update counters, and where the resumable
        population checkpoint is. Each is made when the previous one has been written (one template)."""
        dm = trainer.datamodule
        for m in self.members:
            state = member_state_dict(self.learner, self.single, m.index)
            yield (
                m.dir / "checkpoints" / name,
                {
                    "state_dict": state,
                    "optimizer_states": [],
                    "RLDataModule": {"frames": dm.frames},
                    "updates": self.learner.updates,
                    "population": {"seed": m.seed, "member": m.index, "seeds": list(dm.seeds)},
                },
            )

    def finals(self) -> list[dict[str, float]]:
        """Each member's latest evaluation ({} without an evaluator)."""
        from algd.callbacks.evaluation import Evaluator

        return [next((dict(c.last) for c in cbs if isinstance(c, Evaluator)), {}) for cbs in self.callbacks]

    def flush(self) -> None:
        for m in self.members:
            m.logger.experiment.flush()

    # ---------------------------------------------------------------------------------------------- hooks
    def _each(self, hook: str, *args) -> None:
        for (view, learner), callbacks in zip(self.views, self.callbacks):
            for callback in callbacks:
                getattr(callback, hook)(view, learner, *args)

    def on_train_start(self, trainer, pl_module):
        self._each("on_train_start")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._each("on_train_batch_end", outputs, batch, batch_idx)

    def on_train_end(self, trainer, pl_module):
        self._each("on_train_end")
        self.flush()

    def on_exception(self, trainer, pl_module, exception):
        self._each("on_exception", exception)


def population_of(trainer) -> Population | None:
    """The trainer's :class:`Population` callback (None for a single run)."""
    return next((c for c in trainer.callbacks if isinstance(c, Population)), None)


def member_trainers(trainer) -> list:
    """What per-agent outputs are written through: the trainer itself, or each member's view of it."""
    population = population_of(trainer)
    return population.trainers() if population is not None else [trainer]
