"""Where the configs are, what each group offers, and the small override helpers the launch code shares."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CONFIG_DIR = Path(os.environ.get("ALGD_CONFIG_DIR", Path(__file__).resolve().parents[3] / "configs"))

# The groups whose values ``rewrite_argv`` checks against the YAML files of ``configs/<group>/``.
GROUPS = (
    "env",
    "protocol",
    "actor",
    "critic",
    "energy",
    "multiplier",
    "optim",
    "collector",
    "trainer",
    "experiment",
    "ablation",
    "model",
    "data",
    "logger",
    "callbacks",
    "paths",
)


def config_options(group: str) -> list[str]:
    """The valid values of a config group: the YAML files in ``configs/<group>/``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def override_key(arg: str) -> str:
    """The key of a Hydra override (``+a.b=1`` → ``a.b``)."""
    return arg.partition("=")[0].lstrip("+~")


def quote(value: str) -> str:
    """A Hydra override value taken literally (run-dir names contain '=' and ',')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def is_multirun(argv: list[str]) -> bool:
    return any(a in ("-m", "--multirun") for a in argv)


def protocol_name(cfg) -> str:
    """The evaluation protocol a config describes (the toy env has its own)."""
    return cfg.protocol.name if cfg.env.name != "toy" else "toy"


def seed_tag(seed, seeds) -> str:
    """The seed part of a run directory's name: ``seed3``, or ``seeds0-1-2-3`` for a population."""
    if not seeds:
        return f"seed{seed}"
    return "seeds" + ("-".join(str(s) for s in seeds) if isinstance(seeds, Sequence) else str(seeds))


def _register_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("algd_seed_tag", seed_tag, replace=True)  # hydra.run.dir (configs/train.yaml)


_register_resolvers()
