import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted(p.parent.parent for p in tmp_path.rglob("checkpoints/last.ckpt"))


@pytest.fixture
def train():
    return run_train


def overrides(text: str) -> list[str]:
    """Command-line overrides written as one string: ``overrides("env=toy utd=1")`` → ``["env=toy", "utd=1"]``."""
    return text.split()
