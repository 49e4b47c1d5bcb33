"""Several training processes at a time on one machine (``make reproduce JOBS=2``), each with its share of the cores.

On a 2-core CPU two 1-thread training processes make more updates together than one 2-thread process: the update's
many small ops scale poorly across threads, and one process's collection and Python overhead run beside the other's
matmuls (docs/performance.md, *Parallel jobs*). :func:`run_parallel` runs commands ``jobs`` at a time: each child's
output goes whole to its log file, its lines to this process's stdout with a ``[name]`` prefix, and its latest progress
bar (tqdm's ``\\r`` updates) is printed every ``progress_every`` seconds; SIGINT, SIGTERM and SIGUSR1 are passed on to
every running child (a training run saves its checkpoint on them), and no job starts after one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Torch threads for each of ``jobs`` processes at a time: the cores shared out (at least 1)."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, int(jobs)))


def makespan(hours: list[float], jobs: int) -> float:
    """Wall time of tasks of these durations run ``jobs`` at a time in the given order, each starting as soon as a
    slot frees (how :func:`run_parallel` schedules them)."""
    slots = [0.0] * max(1, int(jobs))
    for h in hours:
        slots[slots.index(min(slots))] += h
    return max(slots)


@dataclass
class Job:
    """A command to run: ``name`` prefixes its lines; its whole output is appended to ``log``."""

    name: str
    cmd: list[str]
    log: Path
    note: str = ""  # what the caller says of it when it starts
    returncode: int | None = None
    progress: str = ""  # the child's latest progress bar
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _pump: threading.Thread | None = field(default=None, repr=False)

    def start(self, lock: threading.Lock) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._pump = threading.Thread(target=self._read, args=(lock,), daemon=True)
        self._pump.start()

    def _read(self, lock: threading.Lock) -> None:
        """Copy the child's output to its log; print each finished line with the prefix; keep the latest ``\\r``
        segment (a progress bar redrawn in place) as ``progress``."""
        buf = b""
        with open(self.log, "ab") as log:
            while chunk := self._proc.stdout.read1(1 << 16):
                log.write(chunk)
                log.flush()
                buf += chunk
                while (cut := min((i for i in (buf.find(b"\n"), buf.find(b"\r")) if i >= 0), default=-1)) >= 0:
                    text, end, buf = buf[:cut].decode(errors="replace").strip(), buf[cut : cut + 1], buf[cut + 1 :]
                    if not text:
                        continue
                    if end == b"\n":
                        with lock:
                            print(f"[{self.name}] {text}", flush=True)
                    else:
                        self.progress = text
        text = buf.decode(errors="replace").strip()
        if text:
            with lock:
                print(f"[{self.name}] {text}", flush=True)

    def poll(self) -> int | None:
        if self.returncode is None and self._proc is not None and self._proc.poll() is not None:
            self._pump.join()
            self.returncode = self._proc.returncode
        return self.returncode

    def send(self, signum: int) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signum)


def run_parallel(jobs: list[Job], at_once: int, progress_every: float = 600.0, on_start=None, on_end=None) -> bool:
    """Run ``jobs`` in order, ``at_once`` at a time, until all have ended; ``on_start(job)`` / ``on_end(job)`` are
    called as each starts and ends (``on_end`` may return False to start no further job). Returns False if a signal
    (or ``on_end``) stopped the starting of new jobs, else True."""
    lock = threading.Lock()
    queue, running, go_on = list(jobs), [], [True]

    def forward(signum, frame):
        go_on[0] = False
        for job in running:
            job.send(signum)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNALS}
    try:
        shown = time.monotonic()
        while running or (queue and go_on[0]):
            while queue and go_on[0] and len(running) < at_once:
                job = queue.pop(0)
                if on_start is not None:
                    on_start(job)
                job.start(lock)
                running.append(job)
            time.sleep(0.2)
            for job in [j for j in running if j.poll() is not None]:
                running.remove(job)
                if on_end is not None and on_end(job) is False:
                    go_on[0] = False
            if running and time.monotonic() - shown >= progress_every:
                shown = time.monotonic()
                with lock:
                    for job in running:
                        print(f"[{job.name}] {job.progress or 'started'}", flush=True)
        return go_on[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.stdout.flush()
