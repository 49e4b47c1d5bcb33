"""Population runs (``seeds=[s0,s1,...]``): S agents trained in one process, one learner axis through every network
(:mod:`algd.learner.population`) and S envs stepped together (:mod:`algd.data.population`).

The run directory holds the population's resumable ``checkpoints/last.ckpt``, its ``.hydra/`` and
``population.json`` (the seeds and the members' directories); member s writes ``<run dir>/seed<s>/`` as the single
run with ``seed=<s>`` would: TensorBoard events, ``.hydra/`` (its config and overrides: the population's, with
``seed=<s>`` for ``seeds``), ``status.json`` and weights-only ``checkpoints/`` (:mod:`algd.callbacks.population`).
Reports, ``algd-eval`` and sweep summaries read the members as ordinary runs; ``resume=<run dir>`` continues all.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from algd.launch.config import override_key

MANIFEST = "population.json"


def population_seeds(cfg) -> list[int] | None:
    """The members' seeds of a population config (None for a single run)."""
    seeds = cfg.get("seeds")
    return [int(s) for s in seeds] if seeds else None


def population_dir(run_dir: Path) -> Path | None:
    """The population a member's run directory belongs to (None for any other run)."""
    parent = Path(run_dir).parent
    return parent if (parent / MANIFEST).is_file() else None


def member_dirs(run_dir: Path) -> list[Path]:
    """The members' run directories of a population's run directory ([] for any other run)."""
    manifest = Path(run_dir) / MANIFEST
    if not manifest.is_file():
        return []
    return [Path(run_dir) / name for name in json.loads(manifest.read_text())["members"]]


def member_overrides(overrides: list[str], seed: int) -> list[str]:
    """A member's overrides: the population's, with ``seed=<s>`` for its ``seeds`` (and no ``resume``)."""
    return [o for o in overrides if override_key(o) not in ("seeds", "seed", "resume")] + [f"seed={seed}"]


def member_config(cfg, seed: int, out_dir: Path):
    """The config of the single run with ``seed`` that writes into ``out_dir``."""
    from omegaconf import open_dict

    member = copy.deepcopy(cfg)
    with open_dict(member):
        member.seed, member.seeds, member.resume = int(seed), None, None
        member.paths.output_dir = str(out_dir)
    return member


def prepare(cfg, out_dir: Path, seeds: list[int]) -> list[Path]:
    """Write ``population.json`` and each member's ``.hydra/`` (config and overrides); the members' directories."""
    import yaml
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    dirs = [out_dir / f"seed{seed}" for seed in seeds]
    for seed, run_dir in zip(seeds, dirs):
        hydra_dir = run_dir / ".hydra"
        hydra_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(member_config(cfg, seed, run_dir), hydra_dir / "config.yaml")
        (hydra_dir / "overrides.yaml").write_text(yaml.safe_dump(member_overrides(overrides, seed)))
    (out_dir / MANIFEST).write_text(json.dumps({"seeds": seeds, "members": [d.name for d in dirs]}, indent=1))
    return dirs


def build_members(cfg, dirs: list[Path], seeds: list[int], purge_step: int | None):
    """A :class:`~algd.callbacks.population.Member` per seed, with the TensorBoard logger of its run directory."""
    from algd import build
    from algd.callbacks.population import Member

    return [
        Member(i, seed, run_dir, build.build_logger(member_config(cfg, seed, run_dir), purge_step))
        for i, (seed, run_dir) in enumerate(zip(seeds, dirs))
    ]


def population_callbacks(callbacks: dict, members, single) -> dict:
    """The callbacks of a population run: each member's copy of the per-member ones (``per_member``) run by one
    :class:`~algd.callbacks.population.Population` callback at the place of the first of them."""
    from algd.callbacks.population import Population

    per_member = [name for name, cb in callbacks.items() if getattr(cb, "per_member", False)]
    copies = [[copy.deepcopy(callbacks[name]) for name in per_member] for _ in members]
    for member, own in zip(members, copies):
        for callback in own:
            if hasattr(callback, "label"):
                callback.label = f" seed {member.seed}"
    out = {}
    for name, callback in callbacks.items():
        if name not in per_member:
            out[name] = callback
        elif "population" not in out:
            out["population"] = Population(members, copies, single)
    return out


def finish(population, frames: int, updates: int) -> dict[str, float]:
    """Record each member's completion (``status.json`` with its final evaluation) and print it; the members'
    mean final metrics (the population's own record)."""
    from algd.launch.status import saved_overrides, write_status

    finals = population.finals()
    print(f"[algd] done: {frames} frames, {updates} updates per member")
    for member, final in zip(population.members, finals):
        overrides = saved_overrides(member.dir)
        write_status(member.dir, "completed", overrides, population=str(member.dir.parent), final=final)
        print(
            f"[algd]   seed {member.seed}: final eval return {final.get('eval/return', float('nan')):.2f}, cost "
            f"{final.get('eval/cost', float('nan')):.2f} ({member.dir})"
        )
    keys = set.intersection(*(set(f) for f in finals)) if finals else set()
    return {k: sum(f[k] for f in finals) / len(finals) for k in sorted(keys)}
