import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MUJOCO_GL", "egl")


def run_train(*overrides: str, tmp_path: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real Hydra entry point in a subprocess, writing under ``tmp_path``."""
    flags = [o for o in overrides if o.startswith("-")]
    cmd = [
        sys.executable,
        "-m",
        "algd.train",
        *flags,
        f"paths.log_dir={tmp_path}",
        *[o for o in overrides if not o.startswith("-")],
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def wait_until(done, proc: subprocess.Popen, seconds: float, what: str, every: float = 0.1) -> None:
    """Poll ``done()`` until it holds, failing with ``what`` if the process ``proc`` exits first or ``seconds`` pass."""
    deadline = time.time() + seconds
    while not done():
        assert proc.poll() is None, f"the process exited before {what}"
        assert time.time() < deadline, f"no {what} within {seconds:g} s"
        time.sleep(every)


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p.parent.parent for p in tmp_path.rglob("checkpoints/last.ckpt"))


@pytest.fixture
def train():
    return run_train


def overrides(text: str) -> list[str]:
    """Command-line overrides written as one string: ``overrides("env=toy utd=1")`` → ``["env=toy", "utd=1"]``."""
    return text.split()


@contextmanager
def patched_draws(serve):
    """``torch.randn``/``randn_like``/``randint`` answered by ``serve(kind, shape, draw)``: ``kind`` is ``normal`` or
    ``int``, ``shape`` the shape asked for and ``draw()`` makes the real draw (to record it, say)."""
    real = {name: getattr(torch, name) for name in ("randn", "randn_like", "randint")}

    def randn(*size, **kwargs):
        shape = tuple(size[0]) if len(size) == 1 and not isinstance(size[0], int) else tuple(size)
        return serve("normal", shape, lambda: real["randn"](*size, **kwargs))

    def randn_like(t, **kwargs):
        return serve("normal", tuple(t.shape), lambda: real["randn_like"](t, **kwargs))

    def randint(*args, size=None, **kwargs):
        shape = tuple(size if size is not None else args[-1])
        extra = {} if size is None else {"size": size}
        return serve("int", shape, lambda: real["randint"](*args, **extra, **kwargs))

    torch.randn, torch.randn_like, torch.randint = randn, randn_like, randint
    try:
        yield
    finally:
        for name, fn in real.items():
            setattr(torch, name, fn)
