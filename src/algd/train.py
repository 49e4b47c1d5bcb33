"""Training entry point: ``python -m algd.train env=<name> <hydra overrides>`` (console script ``algd-train``).

Builds, from the Hydra config: the env factory and DataModule (env, collector, replay), the LightningModule
(critics, actor, energy, multiplier), frame-keyed callbacks and a TensorBoard logger, then runs ``Trainer.fit``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

CONFIG_DIR = Path(os.environ.get("ALGD_CONFIG_DIR", Path(__file__).resolve().parents[2] / "configs"))
SAFETY_GYM_ID = re.compile(r"^Safety\w+-v\d+$")


def config_options(group: str) -> list[str]:
    """The valid values of a config group: the YAML files in ``configs/<group>/``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


class ConfigError(ValueError):
    """A bad command-line value; reported as one line and a non-zero exit, without a traceback."""


GROUPS = ("env", "protocol", "actor", "critic", "energy", "multiplier", "optim", "collector", "trainer",
          "experiment")


def rewrite_argv(argv: list[str]) -> list[str]:
    """Map ``env=<full Safety…-v0 id>`` onto the generic ``safety_gym`` config and reject unknown group values
    (sweep values included) before Hydra starts, with a message listing the valid choices."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        if not sep or group not in GROUPS or value in ("", "null"):
            out.append(arg)
            continue
        valid = config_options(group)
        values = value.split(",")
        if group == "env" and len(values) == 1 and value not in valid and SAFETY_GYM_ID.match(value):
            out += ["env=safety_gym", f"env.id={value}"]
            continue
        for v in values:
            if v in valid:
                continue
            if group == "env" and SAFETY_GYM_ID.match(v):
                raise ConfigError(f"full Safety-Gymnasium ids cannot be swept with env=...; sweep them as "
                                  f"env=safety_gym env.id=<id1>,<id2> (got {value!r})")
            extra = " or any full Safety-Gymnasium id such as SafetyPointGoal2-v0" if group == "env" else ""
            names = [n for n in valid if n != "safety_gym"]
            raise ConfigError(f"unknown {group} {v!r}; valid {group} names: {', '.join(names)}{extra}")
        out.append(arg)
    return out


def build(node, **kwargs):
    """``hydra.utils.instantiate`` without the descriptive ``name`` key that component configs carry."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    node = OmegaConf.masked_copy(node, [k for k in node if k != "name"])
    return instantiate(node, **kwargs)


def quiet_libraries() -> None:
    """Silence start-up chatter and warnings that do not concern the user (the ``dataloader_iter`` training step
    chosen on purpose, cloud-logging tips)."""
    import logging
    import warnings

    import torchrl  # noqa: F401  (configures its logger on import; adjust it afterwards)

    for pattern in [".*Found `dataloader_iter` argument.*", ".*`dataloader_iter` step flavor.*",
                    ".*isinstance\\(treespec, LeafSpec\\).*", ".*does not have many workers.*"]:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ["lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "torchrl"]:
        logging.getLogger(name).setLevel(logging.WARNING)


def run(cfg) -> dict[str, float]:
    """Train one run described by ``cfg``; returns the final evaluation metrics."""
    quiet_libraries()
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import TensorBoardLogger
    from omegaconf import OmegaConf

    from algd.callbacks import Checkpointer, Evaluator, FrameLogger, FrameProgressBar
    from algd.data import RLDataModule
    from algd.envs import per_step_cost_target
    from algd.module import SafeActorCritic

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    factory = instantiate(cfg.env, _convert_="all")
    info = factory.info
    h = per_step_cost_target(info.cost_limit, float(cfg.cost_gamma), info.episode_length)
    protocol = cfg.protocol.name if cfg.env.name != "toy" else "toy"
    print(f"[algd] run dir: {out_dir}")
    print(f"[algd] monitor: tensorboard --logdir {out_dir.parent if 'multiruns' in str(out_dir) else out_dir}")
    print(f"[algd] env {info.name} ({protocol} protocol): episode {info.episode_length} steps, cost limit "
          f"{info.cost_limit:g}, h = {h:.4f}; actor {cfg.actor.name}, energy {cfg.energy._target_.split('.')[-1]}, "
          f"seed {cfg.seed}, {cfg.total_frames} frames ({cfg.warmup_frames} warm-up), utd {cfg.utd}")

    dm = RLDataModule(factory, seed=int(cfg.seed), total_frames=int(cfg.total_frames),
                      warmup_frames=int(cfg.warmup_frames), utd=float(cfg.utd), batch_size=int(cfg.batch_size),
                      frames_per_batch=int(cfg.collector.frames_per_batch),
                      buffer_capacity=int(cfg.buffer_capacity))
    try:
        model = SafeActorCritic(
            **dm.specs(), h=h, cost_done_mask=info.cost_done_mask, actor=build(cfg.actor),
            energy=instantiate(cfg.energy), multiplier=instantiate(cfg.multiplier), optim=instantiate(cfg.optim),
            critic_hidden=list(cfg.critic.hidden), cost_hidden=list(cfg.critic.cost_hidden),
            ensemble=int(cfg.ensemble), k=float(cfg.k), gamma=float(cfg.gamma), cost_gamma=float(cfg.cost_gamma),
            tau=float(cfg.tau), polyak_every=int(cfg.polyak_every), grad_clip=cfg.grad_clip)
        dm.set_policy(model.actor.policy())
        logger = TensorBoardLogger(save_dir=str(out_dir), name="", version="tb", default_hp_metric=False)
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        evaluator = Evaluator(factory, info, seed=int(cfg.seed), every_frames=int(cfg.eval_every_frames),
                              episodes=int(cfg.eval_episodes))
        callbacks = [FrameLogger(int(cfg.log_every_frames)), evaluator,
                     Checkpointer(str(out_dir / "checkpoints"), int(cfg.checkpoint_every_frames)),
                     FrameProgressBar()]
        trainer = L.Trainer(accelerator=cfg.trainer.accelerator, devices=1, max_epochs=1, max_steps=-1,
                            logger=logger, callbacks=callbacks, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            log_every_n_steps=10**9, deterministic=False)
        trainer.fit(model, datamodule=dm)
        logger.experiment.flush()
    finally:
        dm.close()
    final = dict(evaluator.last)
    print(f"[algd] done: {dm.frames} frames, {dm.updates} updates; final eval return "
          f"{final.get('eval/return', float('nan')):.2f}, cost {final.get('eval/cost', float('nan')):.2f}")
    return final


def main(argv: list[str] | None = None) -> None:
    import hydra

    try:
        sys.argv = [sys.argv[0], *rewrite_argv(sys.argv[1:] if argv is None else argv)]
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
    def _main(cfg) -> None:
        run(cfg)

    _main()


if __name__ == "__main__":
    main()
