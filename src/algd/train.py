"""Training entry point: ``python -m algd.train env=<name> <hydra overrides>`` (console script ``algd-train``).

Builds, from the Hydra config: the env factory and DataModule (env, collector, replay), the LightningModule
(critics, actor, energy, multiplier), frame-keyed callbacks and a TensorBoard logger, then runs ``Trainer.fit``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

from algd.errors import AlgdError, CheckpointError, ConfigError, TrainingStopped

__all__ = ["AlgdError", "CheckpointError", "ConfigError", "TrainingStopped", "main", "run"]

CONFIG_DIR = Path(os.environ.get("ALGD_CONFIG_DIR", Path(__file__).resolve().parents[2] / "configs"))
SAFETY_GYM_ID = re.compile(r"^Safety\w+-v\d+$")
VELOCITY_ID = re.compile(r"^Safety(\w+)Velocity-v\d+$")


def config_options(group: str) -> list[str]:
    """The valid values of a config group: the YAML files in ``configs/<group>/``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


GROUPS = ("env", "protocol", "actor", "critic", "energy", "multiplier", "optim", "collector", "trainer",
          "experiment", "ablation")


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
        velocity = VELOCITY_ID.match(value) if group == "env" else None
        if velocity and velocity[1] in valid:  # Safety-Gym's velocity ids are the standard protocol of env=<Name>
            raise ConfigError(f"use env={velocity[1]} protocol=standard for {value} (env={velocity[1]} "
                              f"protocol=paper is the CAL/ALGD speed-cost version)")
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


def check_ablation(argv: list[str]) -> None:
    """``ablation=<name>`` (a sweep preset, ``configs/ablation/``) needs ``-m``, and the keys it sweeps must not also
    be set on the command line (a command-line value would silently replace the swept ones)."""
    names = [a.partition("=")[2] for a in argv if _override_key(a) == "ablation"]
    if not names or names[-1] == "null":
        return
    name = names[-1]
    if not name:
        raise ConfigError(f"ablation= needs a preset name; valid ablation names: {', '.join(config_options('ablation'))}")
    if not any(a in ("-m", "--multirun") for a in argv):
        raise ConfigError(f"ablation={name} is a sweep preset: add -m (python -m algd.train -m ablation={name} ...) "
                          f"or run make ablate ABL={name}")
    import yaml

    swept = (yaml.safe_load((CONFIG_DIR / "ablation" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"])
    for arg in argv:
        if _override_key(arg) in swept:
            raise ConfigError(f"ablation={name} sweeps {_override_key(arg)} ({swept[_override_key(arg)]}); drop "
                              f"{arg} from the command line")


def _quote(value: str) -> str:
    """A Hydra override value taken literally (run-dir names contain '=' and ',')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _override_key(arg: str) -> str:
    return arg.partition("=")[0].lstrip("+~")


def find_checkpoint(path: str | Path, key: str = "resume") -> tuple[Path, Path]:
    """(run dir, checkpoint) for ``<key>=<run dir or checkpoint file>``."""
    path = Path(path).expanduser().resolve()
    if path.is_file():
        return path.parent.parent, path
    if not path.is_dir():
        raise ConfigError(f"{key}={path}: no such run directory or checkpoint file")
    return path, path / "checkpoints" / "last.ckpt"


def load_run(value: str, key: str = "resume") -> tuple[Path, Path, list[str]]:
    """(run dir, checkpoint, the run's own overrides from ``.hydra/overrides.yaml``) for ``<key>=<run dir or
    checkpoint file>``; one clear error when it is not an algd run or has no checkpoint yet."""
    run_dir, ckpt = find_checkpoint(value, key)
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError(f"{key}={value}: {run_dir} is not an algd run directory (no .hydra/overrides.yaml); "
                          f"pass the folder printed as 'run dir:' when the run started")
    if not ckpt.is_file():
        raise ConfigError(f"{key}={value}: no checkpoint at {ckpt} (the run stopped before its first checkpoint)")
    import yaml

    original = [a for a in (yaml.safe_load(saved.read_text()) or []) if _override_key(a) != "resume"]
    return run_dir, ckpt, original


def merge_overrides(original: list[str], new: list[str]) -> list[str]:
    """The run's overrides, then the new ones: a later value of a key wins (one entry per key)."""
    merged: dict[str, str] = {}
    for arg in [*original, *new]:
        merged.pop(_override_key(arg), None)
        merged[_override_key(arg)] = arg
    return list(merged.values())


def expand_resume(argv: list[str]) -> tuple[list[str], Path | None]:
    """``resume=<run dir>``: replay the run's own overrides (``.hydra/overrides.yaml``), then the new ones (a later
    value of a key wins, e.g. a larger ``total_frames`` or a lower ``optim.lr``), and write into the same run dir."""
    values = [a.partition("=")[2] for a in argv if _override_key(a) == "resume"]
    if not values or values[-1] in ("", "null"):
        return argv, None
    if any(a in ("-m", "--multirun") for a in argv):
        raise ConfigError("resume= continues one run and cannot be combined with --multirun; resume each job's "
                          "directory separately")
    run_dir, ckpt, original = load_run(values[-1])
    new = [a for a in argv if _override_key(a) != "resume"]
    before = {_override_key(a): a.partition("=")[2] for a in original}
    for arg in new:
        key, value = _override_key(arg), arg.partition("=")[2]
        if key in ("env", "actor") and value != before.get(key, value):
            raise ConfigError(f"resume={values[-1]}: the run was trained with {key}={before[key]}; {key}={value} "
                              f"would not fit its checkpoint (start a new run instead)")
    out = [*merge_overrides(original, new), f"hydra.run.dir={_quote(str(run_dir))}", f"resume={_quote(str(ckpt))}"]
    return out, run_dir


def _keep_config_history(run_dir: Path) -> None:
    """Hydra rewrites ``.hydra/*.yaml`` for the resumed run; keep the earlier ones in ``.hydra/history/<n>/``."""
    import shutil

    hydra_dir = run_dir / ".hydra"
    history = hydra_dir / "history"
    target = history / str(len(list(history.glob("*"))) if history.exists() else 0)
    target.mkdir(parents=True)
    for f in hydra_dir.glob("*.yaml"):
        shutil.copy2(f, target / f.name)


def _check(ok: bool, key: str, value, rule: str) -> None:
    if not ok:
        raise ConfigError(f"invalid {key}={value}: must be {rule}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def validate(cfg) -> None:
    """Reject impossible values before any work, one clear line each (key, value, what is allowed)."""
    def get(key):
        node = cfg
        for part in key.split("."):
            node = node.get(part) if hasattr(node, "get") else None
        return node

    def integer(key, low, rule=None):
        v = get(key)
        _check(_is_int(v) and v >= low, key, v, rule or f"an integer >= {low}")

    def number(key, low, high=None, low_open=False, rule=None):
        v = get(key)
        ok = _is_num(v) and (v > low if low_open else v >= low) and (high is None or v <= high)
        bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
        _check(ok, key, v, rule or f"a number {bounds}")

    for key in ["seed", "warmup_frames", "eval_every_frames", "eval_episodes", "checkpoint_every_frames"]:
        integer(key, 0)
    for key in ["total_frames", "batch_size", "log_every_frames", "ensemble", "polyak_every", "buffer_capacity",
                "collector.frames_per_batch", "collector.workers", "env.max_episode_steps"]:
        integer(key, 1)
    _check(cfg.collector.name in ("single", "multi", "async"), "collector.name", cfg.collector.name,
           "one of single, multi, async")
    if cfg.collector.name == "multi":  # the workers step together and share each batch
        _check(cfg.collector.frames_per_batch % cfg.collector.workers == 0, "collector.frames_per_batch",
               cfg.collector.frames_per_batch, f"a multiple of collector.workers ({cfg.collector.workers})")
    if get("callbacks.video.every_frames") is not None:
        integer("callbacks.video.every_frames", 0, "null or 0 (off) or an integer >= 1 (frames between videos)")
    for key in ["callbacks.video.max_frames", "callbacks.video.width", "callbacks.video.height",
                "callbacks.video.fps"]:
        integer(key, 1)
    if get("collector.sync_every_frames") is not None:
        integer("collector.sync_every_frames", 1, "null (refresh before every collection) or an integer >= 1")
    _check(cfg.warmup_frames < cfg.total_frames, "warmup_frames", cfg.warmup_frames,
           f"< total_frames ({cfg.total_frames}), or no update would ever run")
    _check(cfg.batch_size <= cfg.warmup_frames, "batch_size", cfg.batch_size,
           f"<= warmup_frames ({cfg.warmup_frames}), so the first update samples a full batch of warm-up data")
    _check(cfg.buffer_capacity >= cfg.batch_size, "buffer_capacity", cfg.buffer_capacity,
           f">= batch_size ({cfg.batch_size})")
    number("utd", 0, low_open=True, rule="a number > 0 (gradient updates per environment frame)")
    number("k", 0, rule="a number >= 0 (risk coefficient: Q̂c = mean + k·std)")
    for key in ["gamma", "cost_gamma", "tau"]:
        number(key, 0, 1, low_open=True)
    if get("grad_clip") is not None:
        number("grad_clip", 0, low_open=True, rule="null or a number > 0")
    if get("env.cost_limit") is not None:
        number("env.cost_limit", 0, rule="a number >= 0 (episode cost limit)")
    actor = cfg.actor
    if "steps" in actor:
        low = 2 if actor.name == "diffusion_ve" else 1
        integer("actor.steps", low, f"an integer >= {low} (K, the number of denoising steps)")
    if "mc_samples" in actor:
        integer("actor.mc_samples", 1, "an integer >= 1 (N, Monte-Carlo samples for the score target)")
    if "beta_temperature" in actor:
        number("actor.beta_temperature", 0, low_open=True)
    for key in ["guidance_weight", "c_energy", "c_score"]:
        if key in actor:
            number(f"actor.{key}", 0)
    for key in ["hidden", "critic.hidden", "critic.cost_hidden"]:
        full = key if "." in key else f"actor.{key}"
        v = get(full)
        if v is not None:
            _check(len(v) >= 1 and all(_is_int(w) and w >= 1 for w in v), full, list(v),
                   "a non-empty list of positive layer widths")
    if "rho" in cfg.energy:
        number("energy.rho", 0, low_open=True)
    if "lr" in cfg.optim:
        number("optim.lr", 0, low_open=True)
    accelerator = cfg.trainer.accelerator
    _check(accelerator in ("cpu", "gpu", "cuda", "auto"), "trainer.accelerator", accelerator, "one of cpu, gpu, auto")
    _check(cfg.trainer.get("cuda_graphs", False) in (True, False), "trainer.cuda_graphs", cfg.trainer.get("cuda_graphs"),
           "true or false")
    if cfg.trainer.threads is not None:
        integer("trainer.threads", 1, "null (torch's default) or an integer >= 1")


def protocol_name(cfg) -> str:
    """The evaluation protocol a config describes (the toy env has its own)."""
    return cfg.protocol.name if cfg.env.name != "toy" else "toy"


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


def default_threads(cfg) -> int | None:
    """``trainer.threads``, or, for parallel sweep jobs: cores ÷ parallel jobs on one machine (joblib; two jobs that
    each use every core slow each other down 10–20×), the CPUs Ray reserves for each job (ray: 1 unless
    ``hydra.launcher.ray.remote.num_cpus`` is set)."""
    if cfg.trainer.threads:
        return int(cfg.trainer.threads)
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
    except (ValueError, AttributeError):
        return None
    ray = launcher.get("ray")
    if ray is not None:
        return max(1, int((ray.get("remote") or {}).get("num_cpus") or 1))
    n_jobs = launcher.get("n_jobs")
    if not n_jobs:
        return None
    cores = os.cpu_count() or 1
    return max(1, cores // (cores if n_jobs < 0 else int(n_jobs)))


def run(cfg) -> dict[str, float]:
    """Train one run described by ``cfg``; returns the final evaluation metrics."""
    validate(cfg)
    quiet_libraries()
    import lightning as L
    import torch
    from hydra.utils import instantiate
    from lightning.pytorch.loggers import TensorBoardLogger
    from omegaconf import OmegaConf

    from algd.callbacks import (Checkpointer, Evaluator, FrameLogger, FrameProgressBar, Resume, VideoRecorder,
                                load_checkpoint)
    from algd.data import RLDataModule
    from algd.envs import per_step_cost_target
    from algd.module import NonFiniteLossError, SafeActorCritic

    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"invalid trainer.accelerator={cfg.trainer.accelerator}: no CUDA device is visible to torch "
                          f"{torch.__version__}; use trainer.accelerator=cpu")
    on_gpu = cfg.trainer.accelerator in ("gpu", "cuda") or (cfg.trainer.accelerator == "auto"
                                                            and torch.cuda.is_available())
    device = "cuda" if on_gpu else "cpu"  # the learner's and the replay storage's; envs and acting stay on CPU
    cuda_graphs = on_gpu and bool(cfg.trainer.get("cuda_graphs", False))
    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt, ckpt_path = None, None
    if cfg.get("resume"):
        _, ckpt_path = find_checkpoint(cfg.resume)
        ckpt = load_checkpoint(ckpt_path)
        done_frames = int(ckpt["RLDataModule"]["frames"])
        if done_frames >= int(cfg.total_frames):
            print(f"[algd] nothing to do: {ckpt_path} is at frame {done_frames} and total_frames={cfg.total_frames}; "
                  f"pass a larger total_frames to extend the run")
            return {}
    threads = default_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    parts = {}
    for group in ["energy", "multiplier", "optim"]:  # their own checks run before any env or network is built
        try:
            parts[group] = instantiate(cfg[group])
        except Exception as err:  # noqa: BLE001  (hydra wraps the component's ValueError)
            cause = err.__cause__ or err
            raise ConfigError(f"invalid {group} config: {cause}") from None
    from functools import partial

    if cuda_graphs:  # optimiser steps inside a CUDA graph keep their state on the device
        parts["optim"] = partial(parts["optim"], capturable=True)
    if "fused" in cfg.optim and cfg.optim.fused is None:  # auto: the fused kernel on CPU, torch's default on CUDA
        parts["optim"] = partial(parts["optim"], fused=True if device == "cpu" else None)
    factory = instantiate(cfg.env, _convert_="all")
    info = factory.info
    discounted = info.eval_cost_discount is not None
    h = per_step_cost_target(info.cost_limit, float(cfg.cost_gamma), info.episode_length, discounted=discounted)
    protocol = protocol_name(cfg)
    limit = (f"{info.cost_limit:g} (discounted episode cost, γ = {info.eval_cost_discount:g})" if discounted
             else f"{info.cost_limit:g} (episode cost)")
    print(f"[algd] run dir: {out_dir}")
    print(f"[algd] monitor: tensorboard --logdir {out_dir.parent if 'multiruns' in str(out_dir) else out_dir}")
    print(f"[algd] env {info.name} ({protocol} protocol): episode {info.episode_length} steps, cost limit "
          f"{limit}, h = {h:.4f}; actor {cfg.actor.name}, energy {cfg.energy._target_.split('.')[-1]}, "
          f"seed {cfg.seed}, {cfg.total_frames} frames ({cfg.warmup_frames} warm-up), utd {cfg.utd}")

    dm = RLDataModule(factory, seed=int(cfg.seed), total_frames=int(cfg.total_frames),
                      warmup_frames=int(cfg.warmup_frames), utd=float(cfg.utd), batch_size=int(cfg.batch_size),
                      frames_per_batch=int(cfg.collector.frames_per_batch), workers=int(cfg.collector.workers),
                      collector=cfg.collector.name, sync_every_frames=cfg.collector.get("sync_every_frames"),
                      buffer_capacity=int(cfg.buffer_capacity), device=device)
    try:
        model = SafeActorCritic(
            **dm.specs(), h=h, cost_done_mask=info.cost_done_mask, actor=build(cfg.actor),
            energy=parts["energy"], multiplier=parts["multiplier"], optim=parts["optim"],
            critic_hidden=list(cfg.critic.hidden), cost_hidden=list(cfg.critic.cost_hidden),
            ensemble=int(cfg.ensemble), k=float(cfg.k), gamma=float(cfg.gamma), cost_gamma=float(cfg.cost_gamma),
            tau=float(cfg.tau), polyak_every=int(cfg.polyak_every), grad_clip=cfg.grad_clip,
            cuda_graphs=cuda_graphs)
        dm.set_policy(model.actor)
        # A resumed run appends to the same TensorBoard run; points after the checkpoint's frame (logged by the
        # interrupted process after its last checkpoint) are purged, so every curve has one point per frame.
        purge = {"purge_step": int(ckpt["RLDataModule"]["frames"]) + 1} if ckpt is not None else {}
        logger = TensorBoardLogger(save_dir=str(out_dir), name="", version="tb", default_hp_metric=False, **purge)
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        evaluator = Evaluator(factory, info, seed=int(cfg.seed), every_frames=int(cfg.eval_every_frames),
                              episodes=int(cfg.eval_episodes))
        checkpointer = Checkpointer(str(out_dir / "checkpoints"), int(cfg.checkpoint_every_frames))
        callbacks = [FrameLogger(int(cfg.log_every_frames)), evaluator, checkpointer, FrameProgressBar()]
        if cfg.callbacks.video.every_frames:
            callbacks.insert(2, VideoRecorder(factory, info, seed=int(cfg.seed), **cfg.callbacks.video))
        if ckpt is not None:
            callbacks.insert(0, Resume(ckpt, ckpt_path))  # first: the others read the restored frame counter
            ckpt = None
        trainer = L.Trainer(accelerator="gpu" if on_gpu else "cpu", devices=1, max_epochs=1, max_steps=-1,
                            logger=logger, callbacks=callbacks, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                            log_every_n_steps=10**9, deterministic=False)
        try:
            trainer.fit(model, datamodule=dm)
        except NonFiniteLossError as err:
            last = out_dir / "checkpoints" / "last.ckpt"
            if checkpointer.saved_on_exception:
                where = f"the last finite state (frame {dm.frames}, {dm.updates} updates) is saved in {last}"
            elif last.exists():
                where = f"parameters were already non-finite; the last good checkpoint is {last}"
            else:
                where = "parameters were already non-finite and no checkpoint was saved yet"
            raise TrainingStopped(
                f"non-finite {err.name} ({err.value}) at frame {dm.frames}, update {err.update + 1}: training "
                f"stopped; {where}. Change the config (e.g. a lower optim.lr, grad_clip=1.0) and continue with: "
                f"python -m algd.train resume={out_dir} <changed keys>") from None
        logger.experiment.flush()
    finally:
        dm.close()
    final = dict(evaluator.last)
    print(f"[algd] done: {dm.frames} frames, {dm.updates} updates; final eval return "
          f"{final.get('eval/return', float('nan')):.2f}, cost {final.get('eval/cost', float('nan')):.2f}")
    return final


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def _write_status(out_dir: Path, status: str, **fields) -> None:
    """``<run dir>/status.json``: how the run ended (read by the sweep summary)."""
    import json

    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    torch = sys.modules.get("torch")
    record = {"status": status, "job": hc.job.num if _is_multirun() else None,
              "overrides": list(hc.overrides.task), "pid": os.getpid(),
              "threads": torch.get_num_threads() if torch is not None else None, "ended": time.time(), **fields}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "status.json").write_text(json.dumps(record, indent=1))


def task(cfg) -> None:
    """One Hydra job. A failing job of a sweep records why (``status.json``, ``error.log``) and returns, so the other
    jobs run on and the sweep ends with a summary; a single run prints one line and exits non-zero."""
    import traceback

    out_dir = Path(cfg.paths.output_dir)
    started = time.time()
    try:
        final = run(cfg)
    except AlgdError as err:
        code = err.code
        _write_status(out_dir, "failed", started=started, error=str(err), exit_code=code)
        if _is_multirun():
            print(f"[algd] job failed ({out_dir.name}): {err}", file=sys.stderr)
            return
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(code) from None
    except Exception as err:  # noqa: BLE001
        (out_dir / "error.log").write_text(traceback.format_exc())
        _write_status(out_dir, "failed", started=started, error=f"{type(err).__name__}: {err}", exit_code=1)
        if not _is_multirun():
            raise
        traceback.print_exc()
        print(f"[algd] job failed ({out_dir.name}): {type(err).__name__}: {err}; traceback in "
              f"{out_dir / 'error.log'}", file=sys.stderr)
        return
    _write_status(out_dir, "completed", started=started, final={k: float(v) for k, v in final.items()})


_SWEEP = {"failed": 0, "dir": None, "summarized": False}


def summarize_sweep(sweep_dir: Path) -> tuple[int, int]:
    """Print which jobs of a sweep completed and which failed (from their ``status.json``; a job directory without
    one is a job that was killed or crashed before it could write it); (completed, failed)."""
    import json

    sweep_dir = Path(sweep_dir)
    records = [(f.parent, json.loads(f.read_text())) for f in sweep_dir.glob("**/status.json")]
    records.sort(key=lambda r: (r[1].get("job") is None, r[1].get("job") or 0))
    known = {run_dir for run_dir, _ in records}
    unfinished = sorted(d.parent for d in sweep_dir.glob("**/.hydra") if d.parent not in known)
    failed = [r for r in records if r[1]["status"] != "completed"]
    total = len(records) + len(unfinished)
    print(f"\n[algd] sweep {sweep_dir}: {len(records) - len(failed)} of {total} jobs completed, "
          f"{len(failed) + len(unfinished)} failed")
    common = set.intersection(*(set(r[1]["overrides"]) for r in records)) if records else set()
    for run_dir, rec in records:
        swept = " ".join(o for o in rec["overrides"] if o not in common) or "(no swept keys)"
        final = rec.get("final") or {}
        if "eval/return" in final:
            detail = f"eval return {final['eval/return']:.2f}, cost {final['eval/cost']:.2f}"
        else:
            detail = f"{rec.get('error', '').split('; ')[0]} (details: {run_dir / 'status.json'})"
        print(f"  #{rec.get('job')} {rec['status']:<9} {swept}: {detail}")
    for run_dir in unfinished:
        print(f"  #? {'killed':<9} {run_dir.name}: no status.json (the job's process died; see the launcher's "
              f"output)")
    return len(records) - len(failed), len(failed) + len(unfinished)


try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover
    _HydraCallback = object


class SweepSummary(_HydraCallback):
    """Hydra callback (``hydra.callbacks.sweep_summary``): a summary table at the end of every multirun (``main``
    prints it too when the launcher itself stops the sweep early, e.g. on a killed Ray or joblib worker)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        _SWEEP.update(dir=str(config.hydra.sweep.dir), summarized=False, failed=0)

    def on_multirun_end(self, config, **kwargs) -> None:
        _, failed = summarize_sweep(Path(config.hydra.sweep.dir))
        _SWEEP.update(failed=failed, summarized=True)


# hydra/launcher=<name>: the plugin package it needs and the algd extra that installs it
LAUNCHER_EXTRAS = {"joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
                   "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
                   "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
                   "ray": ("hydra_plugins.hydra_ray_launcher", "ray")}


def check_launcher(argv: list[str]) -> None:
    """``hydra/launcher=<name>`` whose plugin is not installed: say which extra installs it."""
    import importlib.util

    for arg in argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+") != "hydra/launcher" or name not in LAUNCHER_EXTRAS:
            continue
        module, extra = LAUNCHER_EXTRAS[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ConfigError(f"hydra/launcher={name} needs the {extra!r} extra: pip install -e '.[{extra}]'")


def main(argv: list[str] | None = None) -> None:
    import hydra

    try:
        args, resume_dir = expand_resume(sys.argv[1:] if argv is None else argv)
        check_launcher(args)
        sys.argv = [sys.argv[0], *rewrite_argv(args)]
        check_ablation(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    if resume_dir is not None:
        _keep_config_history(resume_dir)

    import algd.train as registered  # Hydra's callback lives in algd.train, which is not __main__ under python -m

    try:
        hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(task)()
    except SystemExit as stop:
        sweep = registered._SWEEP
        jobs = sweep["dir"] and not sweep["summarized"] and any(Path(sweep["dir"]).glob("**/.hydra"))
        if stop.code not in (0, None) and jobs:
            print("\n[algd] the launcher stopped the sweep (error above); its jobs so far:", file=sys.stderr)
            summarize_sweep(Path(sweep["dir"]))
        raise
    if registered._SWEEP["failed"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
