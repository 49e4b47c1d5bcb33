"""One writer per run directory: ``<run dir>/.lock``, held with ``flock`` by the process that trains in it.

The kernel releases the lock when its holder exits, however it exits (SIGKILL, a crash, a power cut on a local disk),
so a stale lock needs no clean-up: the next process simply takes it. The file holds the holder's pid and host, which
the refusal names."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from algd.errors import RunBusy

LOCK_FILE = ".lock"


class RunLock:
    """An exclusive, non-blocking lock on a run directory (a context manager)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def _locked(self) -> int:
        """A descriptor of the lock file holding the lock, or :class:`RunBusy` naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").split()
            os.close(fd)
            who = f"pid {holder[0]} on {holder[1]}" if len(holder) >= 2 else "another process"
            raise RunBusy(
                f"run directory {self.path.parent} is in use by {who} (it holds {self.path}); stop that process "
                f"first, or wait for it to finish"
            ) from None
        return fd

    def acquire(self) -> RunLock:
        """Take the lock and write this process's pid and host into the file."""
        fd = self._locked()
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_free(run_dir: Path) -> None:
    """Raise :class:`RunBusy` (one line naming the holder) if a live process trains in ``run_dir`` (a probe: the lock
    file keeps what its last holder wrote)."""
    os.close(RunLock(run_dir)._locked())
