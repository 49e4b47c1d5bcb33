"""``resume=<run dir or checkpoint>``: the run's own overrides replayed, then the new ones, into the same run dir."""

from __future__ import annotations

from pathlib import Path

from algd.errors import ConfigError
from algd.launch.config import is_multirun, override_key, quote
from algd.launch.population import population_dir


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
    population = population_dir(run_dir)
    if key == "resume" and population is not None:
        raise ConfigError(
            f"{key}={value}: {run_dir} is a member of the population {population} (its checkpoints hold weights "
            f"only); continue the whole population: resume={population}"
        )
    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise ConfigError(
            f"{key}={value}: {run_dir} is not an algd run directory (no .hydra/overrides.yaml); "
            f"pass the folder printed as 'run dir:' when the run started"
        )
    if not ckpt.is_file():
        from algd.launch.lock import check_free

        check_free(run_dir)  # a live run that has not saved yet: say so (RunBusy names its pid)
        raise ConfigError(f"{key}={value}: no checkpoint at {ckpt} (the run stopped before its first checkpoint)")
    import yaml

    original = [a for a in (yaml.safe_load(saved.read_text()) or []) if override_key(a) != "resume"]
    return run_dir, ckpt, original


def merge_overrides(original: list[str], new: list[str]) -> list[str]:
    """The run's overrides, then the new ones: a later value of a key wins (one entry per key)."""
    merged: dict[str, str] = {}
    for arg in [*original, *new]:
        merged.pop(override_key(arg), None)
        merged[override_key(arg)] = arg
    return list(merged.values())


def expand_resume(argv: list[str]) -> tuple[list[str], Path | None]:
    """``resume=<run dir>``: replay the run's own overrides (``.hydra/overrides.yaml``), then the new ones (a later
    value of a key wins, e.g. a larger ``total_frames`` or a lower ``optim.lr``), and write into the same run dir."""
    values = [a.partition("=")[2] for a in argv if override_key(a) == "resume"]
    if not values or values[-1] in ("", "null"):
        return argv, None
    if is_multirun(argv):
        raise ConfigError(
            "resume= continues one run and cannot be combined with --multirun; resume each job's directory separately"
        )
    run_dir, ckpt, original = load_run(values[-1])
    new = [a for a in argv if override_key(a) != "resume"]
    before = {override_key(a): a.partition("=")[2] for a in original}
    for arg in new:
        key, value = override_key(arg), arg.partition("=")[2]
        if key in ("env", "actor", "seeds") and value != before.get(key, "null" if key == "seeds" else value):
            raise ConfigError(
                f"resume={values[-1]}: the run was trained with {key}={before.get(key, 'null')}; {key}={value} "
                f"would not fit its checkpoint (start a new run instead)"
            )
    out = [*merge_overrides(original, new), f"hydra.run.dir={quote(str(run_dir))}", f"resume={quote(str(ckpt))}"]
    return out, run_dir


def keep_config_history(run_dir: Path) -> None:
    """Hydra rewrites ``.hydra/*.yaml`` for the resumed run; keep the earlier ones in ``.hydra/history/<n>/``."""
    import shutil

    hydra_dir = run_dir / ".hydra"
    history = hydra_dir / "history"
    target = history / str(len(list(history.glob("*"))) if history.exists() else 0)
    target.mkdir(parents=True)
    for f in hydra_dir.glob("*.yaml"):
        shutil.copy2(f, target / f.name)
