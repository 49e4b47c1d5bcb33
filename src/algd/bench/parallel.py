"""One process with every core against two processes with half the cores each: the choice behind
``make reproduce JOBS=`` (:mod:`algd.launch.jobs`). Each process times the ALGD learner (a population of S) for a fixed
time; the two are started together, so their timings overlap. ``python -m algd.bench.parallel --threads T
--population S --seconds X`` is one such process (it prints its seed-updates/s as JSON)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

POPULATIONS = (1, 2, 4)


def worker(threads: int, population: int, seconds: float) -> float:
    """Seed-updates/s of the default ALGD learner (population S, PointButton1 sizes) over ``seconds``."""
    import torch

    torch.set_num_threads(threads)
    from algd.bench.learner import bench_learner, random_batch

    learner = bench_learner("diffusion", population=population)
    batch = torch.stack([random_batch() for _ in range(population)]) if population > 1 else random_batch()
    for _ in range(3):
        learner.update(batch)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        learner.update(batch)
        n += 1
    return n * population / (time.perf_counter() - start)


def processes_rate(jobs: int, threads: int, population: int, seconds: float) -> float:
    """Summed seed-updates/s of ``jobs`` worker processes started together, ``threads`` torch threads each."""
    cmd = [sys.executable, "-m", "algd.bench.parallel", "--threads", str(threads), "--population", str(population)]
    procs = [
        subprocess.Popen([*cmd, "--seconds", str(seconds)], stdout=subprocess.PIPE, text=True) for _ in range(jobs)
    ]
    rates = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"bench worker failed (exit {proc.returncode}): {' '.join(cmd)}")
        rates.append(json.loads(out.strip().splitlines()[-1])["seed_updates_per_s"])
    return sum(rates)


def jobs_vs_threads(seconds: float = 15.0, populations=POPULATIONS) -> dict:
    """Per population size S: seed-updates/s of one process with every core and of two with half each, and their
    ratio (> 1: two jobs at a time make more updates)."""
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    out = {"cores": cores, "seconds": seconds}
    for s in populations:
        one = processes_rate(1, cores, s, seconds)
        two = processes_rate(2, half, s, seconds)
        out[s] = {f"1x{cores}_threads": one, f"2x{half}_threads": two, "ratio": two / one}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--population", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    rate = worker(args.threads, args.population, args.seconds)
    print(json.dumps({"seed_updates_per_s": rate}))


if __name__ == "__main__":
    main()
