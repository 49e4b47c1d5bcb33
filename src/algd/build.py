"""The one builder: every part of a run is made here, from the composed Hydra config, by ``hydra.utils.instantiate``
of its own group (``env/``, ``data/``, ``model/`` with ``actor/``, ``energy/``, ``multiplier/``, ``optim/``,
``trainer/``, ``logger/``, ``callbacks/``), runtime objects (env sizes, h, the device) passed in at instantiate time.
Training (:mod:`algd.launch.run`), evaluation, the benchmark and the tests all build through these functions, so
none of them can measure or load a learner that training no longer builds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from algd.errors import ConfigError

# Keys of the trainer group that are algd's, not Lightning Trainer arguments.
RUNTIME_TRAINER_KEYS = ("threads", "cuda_graphs", "precision", "updates_per_graph")


def instantiate(node, drop=("name",), **kwargs):
    """``hydra.utils.instantiate`` without the keys ``drop`` (by default the descriptive ``name`` that component
    configs carry)."""
    from hydra.utils import instantiate as hydra_instantiate
    from omegaconf import OmegaConf

    node = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in drop}
    return hydra_instantiate(node, **kwargs)


@dataclass
class Device:
    """Where the learner and the replay storage live (envs and acting always stay on CPU), and the precision of the
    learner's update (``trainer.precision`` resolved: ``32-true`` or ``bf16-mixed``)."""

    name: str  # "cpu" | "cuda"
    cuda_graphs: bool
    precision: str = "32-true"
    why: str = ""  # how the device and the precision were chosen (the run's first lines say it)

    @property
    def accelerator(self) -> str:
        return "gpu" if self.name == "cuda" else "cpu"


def resolve_device(cfg) -> Device:
    """``trainer.accelerator`` (cpu | gpu | cuda | auto), ``trainer.cuda_graphs`` (on CUDA only) and
    ``trainer.precision`` (32-true | bf16-mixed | auto) → a :class:`Device`."""
    import torch

    accelerator, cuda = cfg.trainer.accelerator, torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not cuda:
        raise ConfigError(
            f"invalid trainer.accelerator={accelerator}: no CUDA device is visible to torch "
            f"{torch.__version__}; use trainer.accelerator=cpu (or auto)"
        )
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and cuda)
    name = "cuda" if on_gpu else "cpu"
    graphs = on_gpu and bool(cfg.trainer.get("cuda_graphs", False))
    where = f"{torch.cuda.get_device_name(0)}" if on_gpu else "CPU"
    if accelerator == "auto":
        where += " (accelerator=auto: " + ("CUDA is visible)" if cuda else "no CUDA device visible)")
    where += ", CUDA graphs" if graphs else ""
    precision, why = resolve_precision(str(cfg.trainer.get("precision", "32-true")), name)
    return Device(name, graphs, precision, f"learner on {where}; precision {precision} ({why})")


def resolve_precision(setting: str, device: str) -> tuple[str, str]:
    """``trainer.precision`` on ``device`` → (``32-true`` | ``bf16-mixed``, why). ``auto``: bf16-mixed where bf16
    matmuls are fast: a CUDA device with bf16, or a CPU with AVX512-BF16 or AMX-BF16 whose bf16 matmul at the
    learner's sizes measures ≥ :data:`~algd.launch.runtime.BF16_MIN_SPEEDUP`× fp32 (having the flags is not enough:
    on one Intel Xeon with avx512_bf16 the update ran 1.5× slower in bf16); else 32-true."""
    import torch

    from algd.launch import runtime

    if setting not in ("auto", "bf16-mixed"):  # 32-true (validated before): nothing to measure at start-up
        return setting, "as set"
    if device == "cuda":
        fast = torch.cuda.is_bf16_supported()
        has = "the GPU supports bf16" if fast else "the GPU has no bf16"
    else:
        flags = [f for f in runtime.cpu_bf16_flags() if f != "amx_tile"]
        if not flags:
            fast, has = False, "the CPU has neither avx512_bf16 nor amx_bf16"
        else:
            speedup = runtime.cpu_bf16_speedup()
            fast = speedup >= runtime.BF16_MIN_SPEEDUP
            has = (
                f"the CPU has {', '.join(flags)} and its bf16 matmul runs {speedup:.1f}x fp32 "
                f"({'>=' if fast else '<'} {runtime.BF16_MIN_SPEEDUP:g}x)"
            )
    if setting == "auto":
        return ("bf16-mixed" if fast else "32-true"), f"auto: {has}"
    if setting == "bf16-mixed" and not fast:
        return setting, f"as set; {has}, so bf16 is likely slower than 32-true here"
    return setting, "as set"


def keep_precision(device: Device, ckpt: dict | None, setting: str) -> Device:
    """A resumed run under ``trainer.precision=auto`` keeps the precision its checkpoint was trained in (the CPU
    probe's reading varies from one start to the next, and a run's numbers depend on its precision); a precision set
    explicitly is used as set."""
    saved = (ckpt or {}).get("precision")
    if setting != "auto" or saved is None or saved == device.precision:
        return device
    where, _, now = device.why.partition(f"; precision {device.precision} (auto: ")
    why = f"{where}; precision {saved} (auto: the checkpoint's; this start alone would take {device.precision}, {now}"
    return replace(device, precision=saved, why=why)


def build_env(cfg):
    """The env factory (``env/``): ``factory(seed)`` makes an env, ``factory.info`` describes the task."""
    from hydra.utils import instantiate as hydra_instantiate

    return hydra_instantiate(cfg.env, _convert_="all")


def cost_target(cfg, info) -> float:
    """h for this task and ``cost_gamma`` (:func:`algd.learner.constraint.per_step_cost_target`)."""
    from algd.learner.constraint import per_step_cost_target

    return per_step_cost_target(
        info.cost_limit, float(cfg.cost_gamma), info.episode_length, discounted=info.eval_cost_discount is not None
    )


def build_components(cfg, device: Device, population: int = 1) -> dict:
    """Energy, multiplier and optimiser (``energy/``, ``multiplier/``, ``optim/``); their own checks run here, before
    any env or network is built, and fail as one :class:`ConfigError` line. ``population``: λ for S learners."""
    from hydra.utils import instantiate as hydra_instantiate

    parts = {}
    for group in ["energy", "multiplier", "optim"]:
        extra = {"population": population} if group == "multiplier" and population != 1 else {}
        try:
            parts[group] = hydra_instantiate(cfg[group], **extra)
        except Exception as err:  # noqa: BLE001  (hydra wraps the component's ValueError)
            cause = err.__cause__ or err
            raise ConfigError(f"invalid {group} config: {cause}") from None
    if device.cuda_graphs:  # optimiser steps inside a CUDA graph keep their state on the device
        parts["optim"] = partial(parts["optim"], capturable=True)
    if "fused" in cfg.optim and cfg.optim.fused is None:  # auto: the fused kernel on CPU, torch's default on CUDA
        parts["optim"] = partial(parts["optim"], fused=True if device.name == "cpu" else None)
    return parts


def build_data(cfg, factory, device: Device, seeds: list[int] | None = None):
    """The DataModule (``data/``): env, collector, replay buffer on the learner's device; given ``seeds``, a
    population's (:class:`algd.data.population.PopulationDataModule`: one env per seed). With CUDA graphs,
    ``trainer.updates_per_graph`` updates at a time, their replay sampling on the device."""
    chunks = {"updates_per_step": int(cfg.trainer.get("updates_per_graph") or 1) if device.cuda_graphs else 1}
    if seeds:
        target = "algd.data.population.PopulationDataModule"
        return instantiate(
            cfg.data, env_factory=factory, device=device.name, _target_=target, seeds=list(seeds), **chunks
        )
    return instantiate(cfg.data, env_factory=factory, device=device.name, **chunks)


def build_learner(cfg, specs: dict, info, device: Device, components: dict | None = None, population: int = 1):
    """The learner (``model/``) for env sizes ``specs`` (:func:`algd.data.collectors.env_specs`) and task ``info``;
    ``components`` from :func:`build_components` (built here if not given). ``population`` S > 1: S independent
    learners in one module (:mod:`algd.learner.population`)."""
    parts = components or build_components(cfg, device, population)
    extra = {"population": population} if population != 1 else {}
    actor = instantiate(cfg.actor)(**specs, **extra)  # first: its weights are drawn before the critics', as always
    return instantiate(
        cfg.model,
        obs_dim=specs["obs_dim"],
        act_dim=specs["act_dim"],
        h=cost_target(cfg, info),
        cost_done_mask=info.cost_done_mask,
        actor=actor,
        energy=parts["energy"],
        multiplier=parts["multiplier"],
        optim=parts["optim"],
        cuda_graphs=device.cuda_graphs,
        precision=device.precision,
        **extra,
    )


def restore_learner(cfg, env, info, ckpt: dict, ckpt_path):
    """The learner training built for this run (on CPU, in fp32, as acting runs it), with the weights of the loaded
    checkpoint ``ckpt`` (read from ``ckpt_path``): what ``algd-eval`` and ``algd-calibrate`` evaluate."""
    from algd.callbacks.checkpoint import load_weights
    from algd.data.collectors import env_specs

    learner = build_learner(cfg, env_specs(env), info, Device("cpu", cuda_graphs=False))
    load_weights(learner, ckpt, ckpt_path)
    return learner


def build_callbacks(cfg) -> dict:
    """The callbacks (``callbacks/``), by name, in config order; a node set to null is left out."""
    from hydra.utils import instantiate as hydra_instantiate

    return {name: hydra_instantiate(node) for name, node in cfg.callbacks.items() if node is not None}


def build_logger(cfg, purge_step: int | None = None):
    """The TensorBoard logger (``logger/``); ``purge_step``: drop points logged after a resumed checkpoint."""
    from hydra.utils import instantiate as hydra_instantiate
    from omegaconf import OmegaConf

    extra = {"purge_step": purge_step} if purge_step is not None else {}
    logger = hydra_instantiate(cfg.logger, **extra)
    logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return logger


def build_trainer(cfg, device: Device, logger=None, callbacks=()):
    """The Lightning ``Trainer`` (``trainer/``, less algd's runtime keys) on ``device``."""
    return instantiate(
        cfg.trainer,
        drop=RUNTIME_TRAINER_KEYS,
        accelerator=device.accelerator,
        logger=logger if logger is not None else False,
        callbacks=list(callbacks),
    )


def compose(overrides: list[str] = ()):
    """The training config composed from ``configs/`` with ``overrides``, as ``algd-train`` would see it (outside
    a Hydra app: ``paths.output_dir`` does not resolve, so no logger or checkpoint callback can be built)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    from algd.launch.config import CONFIG_DIR

    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3", job_name="algd"):
            return hydra_compose(config_name="train", overrides=list(overrides))
    except HydraException as err:
        raise ConfigError(" ".join(str(err).split())) from None
