"""Command-line checks before Hydra starts: unknown group values (with the valid choices), full Safety-Gymnasium
ids, sweep presets used without ``-m``, launchers whose plugin is not installed."""

from __future__ import annotations

import re

from algd.errors import ConfigError
from algd.launch.config import CONFIG_DIR, GROUPS, config_options, is_multirun, override_key

SAFETY_GYM_ID = re.compile(r"^Safety\w+-v\d+$")
VELOCITY_ID = re.compile(r"^Safety(\w+)Velocity-v\d+$")
ONE_SEED = re.compile(r"^\[\s*(\d+)\s*\]$")


def rewrite_argv(argv: list[str]) -> list[str]:
    """Map ``env=<full Safety…-v0 id>`` onto the generic ``safety_gym`` config and ``seeds=[<s>]`` onto ``seed=<s>``,
    and reject unknown group values (sweep values included) before Hydra starts, with a message listing the valid
    choices."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~")
        one = ONE_SEED.match(value) if group == "seeds" else None
        if one:  # a population of one is the single run with that seed
            out.append(f"seed={one[1]}")
            continue
        if not sep or group not in GROUPS or value in ("", "null"):
            out.append(arg)
            continue
        valid = config_options(group)
        values = value.split(",")
        velocity = VELOCITY_ID.match(value) if group == "env" else None
        if velocity and velocity[1] in valid:  # Safety-Gym's velocity ids are the standard protocol of env=<Name>
            raise ConfigError(
                f"use env={velocity[1]} protocol=standard for {value} (env={velocity[1]} "
                f"protocol=paper is the CAL/ALGD speed-cost version)"
            )
        if group == "env" and len(values) == 1 and value not in valid and SAFETY_GYM_ID.match(value):
            out += ["env=safety_gym", f"env.id={value}"]
            continue
        for v in values:
            if v in valid:
                continue
            if group == "env" and SAFETY_GYM_ID.match(v):
                raise ConfigError(
                    f"full Safety-Gymnasium ids cannot be swept with env=...; sweep them as "
                    f"env=safety_gym env.id=<id1>,<id2> (got {value!r})"
                )
            extra = " or any full Safety-Gymnasium id such as SafetyPointGoal2-v0" if group == "env" else ""
            names = [n for n in valid if n != "safety_gym"]
            raise ConfigError(f"unknown {group} {v!r}; valid {group} names: {', '.join(names)}{extra}")
        out.append(arg)
    return out


def check_ablation(argv: list[str]) -> None:
    """``ablation=<name>`` (a sweep preset, ``configs/ablation/``) needs ``-m``, and the keys it sweeps must not also
    be set on the command line (a command-line value would silently replace the swept ones)."""
    names = [a.partition("=")[2] for a in argv if override_key(a) == "ablation"]
    if not names or names[-1] == "null":
        return
    name = names[-1]
    if not name:
        raise ConfigError(
            f"ablation= needs a preset name; valid ablation names: {', '.join(config_options('ablation'))}"
        )
    if not is_multirun(argv):
        raise ConfigError(
            f"ablation={name} is a sweep preset: add -m (python -m algd.train -m ablation={name} ...) "
            f"or run make ablate ABL={name}"
        )
    import yaml

    swept = yaml.safe_load((CONFIG_DIR / "ablation" / f"{name}.yaml").read_text())["hydra"]["sweeper"]["params"]
    for arg in argv:
        if override_key(arg) in swept:
            raise ConfigError(
                f"ablation={name} sweeps {override_key(arg)} ({swept[override_key(arg)]}); drop "
                f"{arg} from the command line"
            )


# hydra/launcher=<name>: the plugin package it needs and the algd extra that installs it
LAUNCHER_EXTRAS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "joblib"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
}


def check_launcher(argv: list[str]) -> None:
    """``hydra/launcher=<name>`` whose plugin is not installed: say which extra installs it."""
    import importlib.util

    for arg in argv:
        key, _, name = arg.partition("=")
        if key.lstrip("+") != "hydra/launcher" or name not in LAUNCHER_EXTRAS:
            continue
        module, extra = LAUNCHER_EXTRAS[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            raise ConfigError(f"hydra/launcher={name} needs the {extra!r} extra: pip install -e '.[{extra}]'")
