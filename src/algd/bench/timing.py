"""Timing helpers: every rate is a median of repeats, loops compared in one run are interleaved."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import torch


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_rate(fn, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        rates.append(count / (time.perf_counter() - t0))
    return statistics.median(rates)


def interleaved_rates(loops: dict, count: int, repeats: int) -> dict[str, float]:
    """Every loop once to warm up, then ``repeats`` rounds timing each loop in turn; the median rate of each. A drift
    of the machine's speed during the run hits every loop alike."""
    for loop in loops.values():
        loop()
    rates = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            rates[name].append(median_rate(loop, count, 1))
    return {name: statistics.median(r) for name, r in rates.items()}


def peak_matmul_gflops(n: int = 2048, dtype=torch.float32, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    return median_rate(lambda: a @ b, 2 * n**3, repeats) / 1e9


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return device_name_cpu()


def device_name_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"cpu: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return "cpu"
