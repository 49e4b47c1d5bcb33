"""The config schema: for each component the config builds, the values it accepts (rules in :mod:`algd.checks`).

One place, read twice: :func:`algd.launch.validate.validate` applies it to the composed config before any work
(without importing torch or Lightning, so a bad value fails in well under a second), naming the key the user sets;
and the constructors that check their own arguments call :func:`algd.checks.enforce` with the same entry. A new
hyper-parameter is a YAML line, a constructor argument and, if it has a range, one rule line here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from algd.checks import Relation, Rule, integer, number, one_of, optional, widths


@dataclass(frozen=True)
class Schema:
    """Rules per constructor argument, and relations between arguments."""

    rules: dict[str, Rule]
    relations: tuple[Relation, ...] = field(default_factory=tuple)


COLLECTORS = ("single", "multi", "async")
PRECISIONS = ("32-true", "bf16-mixed", "auto")  # trainer.precision, as Lightning names them

DATA = Schema(
    {
        "seed": integer(0),
        "total_frames": integer(1),
        "warmup_frames": integer(0),
        "utd": number(0, low_open=True, why="a number > 0 (gradient updates per environment frame)"),
        "batch_size": integer(1),
        "buffer_capacity": integer(1),
        "collector": one_of(*COLLECTORS),
        "frames_per_batch": integer(1),
        "workers": integer(1),
        "sync_every_frames": optional(integer(1), "null (refresh before every collection) or an integer >= 1"),
    },
    (
        Relation(  # the workers of collector=multi step together and share each batch
            "frames_per_batch",
            lambda v: v["collector"] != "multi" or v["frames_per_batch"] % v["workers"] == 0,
            lambda v: f"a multiple of collector.workers ({v['workers']})",
        ),
        Relation(
            "warmup_frames",
            lambda v: v["warmup_frames"] < v["total_frames"],
            lambda v: f"< total_frames ({v['total_frames']}), or no update would ever run",
        ),
        Relation(
            "batch_size",
            lambda v: v["batch_size"] <= v["warmup_frames"],
            lambda v: (
                f"<= warmup_frames ({v['warmup_frames']}), so the first update samples a full batch of warm-up data"
            ),
        ),
        Relation(
            "buffer_capacity",
            lambda v: v["buffer_capacity"] >= v["batch_size"],
            lambda v: f">= batch_size ({v['batch_size']})",
        ),
    ),
)

LEARNER = Schema(
    {
        "ensemble": integer(1),
        "polyak_every": integer(1),
        "k": number(0, why="a number >= 0 (risk coefficient: Q̂c = mean + k·std)"),
        **{key: number(0, 1, low_open=True) for key in ("gamma", "cost_gamma", "tau")},
        "grad_clip": optional(number(0, low_open=True), "null or a number > 0"),
        "critic_hidden": widths(),
        "cost_hidden": widths(),
        "reward_done_on_goal": one_of(True, False, text="true or false"),
        "cost_loss_reduction": one_of("sum", "mean", text="sum (over the ensemble, ours) or mean (the reference's)"),
        "lambda_qc": one_of(
            "before_update", "after_update", text="before_update (ours) or after_update (the reference code's)"
        ),
        "precision": one_of(*PRECISIONS[:2], text="32-true or bf16-mixed"),
    }
)

ENV_FACTORY = Schema(
    {"max_episode_steps": integer(1), "cost_limit": optional(number(0), "a number >= 0 (episode cost limit)")}
)

DIFFUSION = Schema(
    {
        "steps": integer(1, "an integer >= 1 (K, the number of denoising steps)"),
        "hidden": widths(),
        "mc_samples": integer(1, "an integer >= 1 (N, Monte-Carlo samples for the score target)"),
        "beta_temperature": number(0, low_open=True),
        "c_energy": number(0),
        "c_score": number(0),
        "score_space": one_of("latent", "action", text="latent (ours) or action (the reference code's)"),
        "score_grad_into_chain": one_of(True, False, text="true or false"),
        "tau_index": one_of("input", "output", text="input (spec §8.3) or output (the reference code's)"),
    }
)
DIFFUSION_VE = Schema({**DIFFUSION.rules, "steps": integer(2, "an integer >= 2 (K, the number of denoising steps)")})
DIFFUSION_DDPM = Schema(
    {
        **DIFFUSION.rules,
        "guidance_weight": number(0),
        "x0_clip": optional(number(0, low_open=True), "null (no clipping) or a number > 0"),
        "schedule": one_of(
            "exact", "reference", text="exact (float64) or reference (the reference code's float32 + 1e-8)"
        ),
        "guidance_eps": number(0),
        "eps_input": one_of("action", "latent", text="action (tanh(x_t), ours) or latent (x_t, the reference code's)"),
    }
)
GAUSSIAN = Schema({"hidden": widths()})

AUGMENTED_ENERGY = Schema({"rho": number(0, low_open=True)})

OPTIM = Schema({"lr": number(0, low_open=True)})
TRAINER = Schema(
    {
        "accelerator": one_of("cpu", "gpu", "cuda", "auto", text="one of cpu, gpu, auto"),
        "cuda_graphs": one_of(True, False, text="true or false"),
        "updates_per_graph": integer(1),
        "threads": optional(integer(1), "null (torch's default) or an integer >= 1"),
        "precision": one_of(*PRECISIONS, text="one of 32-true, bf16-mixed, auto"),
    }
)

CALLBACKS = {
    "frames.FrameLogger": Schema({"every_frames": integer(1)}),
    "evaluation.Evaluator": Schema({"every_frames": integer(0), "episodes": integer(0)}),
    "checkpoint.Checkpointer": Schema(
        {"every_frames": integer(0), "every_minutes": optional(number(0), "null or 0 (off) or a number of minutes > 0")}
    ),
    "video.VideoRecorder": Schema(
        {
            "every_frames": optional(integer(0), "null or 0 (off) or an integer >= 1 (frames between videos)"),
            **{key: integer(1) for key in ("max_frames", "width", "height", "fps")},
        }
    ),
}

# By ``_target_``; the optimiser and the Trainer, whose targets are not ours, by group.
SCHEMAS = {
    "algd.data.module.RLDataModule": DATA,
    "algd.learner.module.SafeActorCritic": LEARNER,
    "algd.envs.toy.ToyFactory": ENV_FACTORY,
    "algd.envs.safety_gym.SafetyGymFactory": ENV_FACTORY,
    "algd.envs.velocity.VelocityFactory": ENV_FACTORY,
    "algd.actors.diffusion.DiffusionActor": DIFFUSION_DDPM,
    "algd.actors.diffusion.DiffusionVEActor": DIFFUSION_VE,
    "algd.actors.gaussian.GaussianActor": GAUSSIAN,
    "algd.learner.energy.AugmentedLagrangianEnergy": AUGMENTED_ENERGY,
    **{f"algd.callbacks.{name}": schema for name, schema in CALLBACKS.items()},
}
GROUPS = {"optim": OPTIM, "trainer": TRAINER}
