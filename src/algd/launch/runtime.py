"""Process settings for a run: headless rendering, quiet libraries and the number of torch threads (no heavy
imports here: the entry points use it before anything else)."""

from __future__ import annotations

import os
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")  # what decides whether CPU bf16 matmuls are fast


def cpu_bf16_flags() -> list[str]:
    """Which of :data:`BF16_FLAGS` this CPU reports (``lscpu`` / ``/proc/cpuinfo`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in BF16_FLAGS if f in flags]


def quiet_libraries() -> None:
    """Silence start-up chatter and warnings that do not concern the user (the ``dataloader_iter`` training step
    chosen on purpose, cloud-logging tips)."""
    import logging
    import warnings

    import torchrl  # noqa: F401  (configures its logger on import; adjust it afterwards)

    for pattern in [
        ".*Found `dataloader_iter` argument.*",
        ".*`dataloader_iter` step flavor.*",
        ".*isinstance\\(treespec, LeafSpec\\).*",
        ".*does not have many workers.*",
    ]:
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


def headless_rendering() -> None:
    """MuJoCo renders headless through ``MUJOCO_GL`` (``egl`` unless the user set it). It must be set before mujoco
    is first imported (``import gymnasium`` imports it), so the entry points call this before anything else; the
    library itself never changes the process environment."""
    os.environ.setdefault("MUJOCO_GL", "egl")
