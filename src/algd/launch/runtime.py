"""Process settings for a run: headless rendering, quiet libraries and the number of torch threads (no heavy
imports here: the entry points use it before anything else)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")  # bf16 matmul instructions: without them bf16 is emulated
# ``trainer.precision=auto`` takes bf16 on a CPU only if its bf16 matmul at the learner's sizes is at least this many
# times faster than fp32 (autocast's casts cost the rest). Probe readings: 4.2x once and 1.8-2.3x on other starts
# (2026-12-04) on 2-core AMD EPYCs with avx512_bf16, where an ALGD update gained 1.3-1.8x; 0.32-0.65x on a 2-core Intel
# Xeon with avx512_bf16 (no AMX), where the update ran 1.5x slower. 2.0 split the EPYC's readings (its runs took
# either precision from one start to the next); 1.3 lies well clear of both machines' ranges.
BF16_MIN_SPEEDUP = 1.3


def cpu_bf16_flags() -> list[str]:
    """Which of :data:`BF16_FLAGS` this CPU reports (``lscpu`` / ``/proc/cpuinfo`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in BF16_FLAGS if f in flags]


@functools.cache
def cpu_bf16_speedup(rows: int = 1024, width: int = 256, rounds: int = 7) -> float:
    """How many times faster a bf16 matmul runs than fp32 on this CPU at the learner's sizes ([N·B, 256] @
    [256, 256], the Monte-Carlo pass at batch 256), with the process's torch threads: the best of ``rounds``
    interleaved timings of each (≈ 0.1 s in all; once per process)."""
    import time

    import torch

    best = {}
    pairs = {
        dt: (torch.randn(rows, width, dtype=dt), torch.randn(width, width, dtype=dt))
        for dt in (torch.float32, torch.bfloat16)
    }
    for _ in range(rounds):
        for dt, (a, b) in pairs.items():
            start = time.perf_counter()
            for _ in range(4):
                a @ b
            best[dt] = min(best.get(dt, float("inf")), time.perf_counter() - start)
    return best[torch.float32] / best[torch.bfloat16]


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
