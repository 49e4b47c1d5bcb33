"""``<run dir>/status.json``: how a run ended (completed, failed with why), written by the job wrapper and read by the
sweep summary and the report. This module is its only reader and writer."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

STATUS_FILE = "status.json"


def is_multirun() -> bool:
    """Whether this Hydra job is part of a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def write_status(out_dir: Path, status: str, overrides: list[str] | None = None, **fields) -> None:
    """Record how this Hydra job ended, with its job number, overrides (the job's unless given), pid and torch
    threads. A population's members end as it did, unless it completed (each member's completion is recorded with
    its own final metrics, :func:`algd.launch.population.finish`)."""
    from hydra.core.hydra_config import HydraConfig

    from algd.launch.population import member_dirs

    hc = HydraConfig.get()
    torch = sys.modules.get("torch")
    record = {
        "status": status,
        "job": hc.job.num if is_multirun() else None,
        "overrides": list(hc.overrides.task) if overrides is None else list(overrides),
        "pid": os.getpid(),
        "threads": torch.get_num_threads() if torch is not None else None,
        "ended": time.time(),
        **fields,
    }
    _write(out_dir, record)
    if status != "completed":
        for member in member_dirs(out_dir):
            _write(member, {**record, "overrides": saved_overrides(member), "population": str(out_dir)})


def saved_overrides(run_dir: Path) -> list[str]:
    """The overrides a run was started with (``.hydra/overrides.yaml``)."""
    import yaml

    return [str(o) for o in yaml.safe_load((Path(run_dir) / ".hydra" / "overrides.yaml").read_text()) or []]


def _write(out_dir: Path, record: dict) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = out_dir / (STATUS_FILE + ".tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, out_dir / STATUS_FILE)
    except OSError as err:  # e.g. the full disk that stopped the run: say so, keep the error that matters
        print(f"[algd] could not write {out_dir / STATUS_FILE}: {err}", file=sys.stderr)


def read_status(run_dir: Path) -> dict | None:
    """The run's status record, or None when it has none (still running, or killed before it could write it)."""
    path = Path(run_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def status_records(root: Path) -> list[tuple[Path, dict]]:
    """(run dir, record) of every run (a population: not each of its members) under ``root`` that has a status."""
    records = [(f.parent, json.loads(f.read_text())) for f in Path(root).glob(f"**/{STATUS_FILE}")]
    return [(run_dir, record) for run_dir, record in records if "population" not in record]
