"""Impossible config values rejected before any work, one clear line each (key, value, what is allowed).

The rules are the config schema's (:mod:`algd.schema`, by ``_target_``); this module finds every node the config
builds and applies its entry, naming the key the user sets.
"""

from __future__ import annotations

from algd.checks import failures
from algd.errors import ConfigError
from algd.schema import GROUPS, SCHEMAS

# The nodes built by ``instantiate`` that the schema covers by ``_target_`` (and each of ``callbacks.*``).
BUILT_NODES = ("data", "model", "env", "actor", "energy")


def user_key(node, path: str, key: str) -> str:
    """The key a user sets for ``<path>.<key>``: the one it interpolates (``${total_frames}`` → ``total_frames``),
    or ``<path>.<key>`` itself."""
    raw = node._get_node(key)._value()
    if isinstance(raw, str) and raw.startswith("${") and raw.endswith("}") and raw.count("${") == 1:
        source = raw[2:-1]
        if ":" not in source and not source.startswith("."):
            return source
    return f"{path}.{key}"


def check_node(node, path: str, rules: dict, relations: tuple = ()) -> None:
    """The first broken rule of ``node`` (the config at ``path``) as a :class:`ConfigError`."""
    values = {key: node[key] for key in rules if key in node}  # only what the rules read (others may not resolve)
    for key, value, text in failures(rules, relations, values):
        shown = list(value) if hasattr(value, "__len__") and not isinstance(value, str) else value
        raise ConfigError(f"invalid {user_key(node, path, key)}={shown}: must be {text}")


def validate(cfg) -> None:
    """Reject impossible values before any work, one clear line each (key, value, what is allowed)."""
    nodes = [(path, cfg[path]) for path in BUILT_NODES]
    nodes += [(f"callbacks.{name}", node) for name, node in cfg.callbacks.items() if node is not None]
    for path, node in nodes:
        schema = SCHEMAS.get(node.get("_target_"))
        if schema is not None:
            check_node(node, path, schema.rules, schema.relations)
    for group, schema in GROUPS.items():
        check_node(cfg[group], group, schema.rules, schema.relations)
    check_population(cfg)


def check_population(cfg) -> None:
    """``seeds``: null, or a list of at least two distinct integers >= 0, with what a population supports."""
    from omegaconf import ListConfig

    seeds = cfg.get("seeds")
    if seeds is None:
        return
    shown = list(seeds) if isinstance(seeds, ListConfig) else seeds
    ints = isinstance(seeds, ListConfig) and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    if not ints or len(seeds) < 2 or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(
            f"invalid seeds={shown}: must be null or a list of at least two distinct integers >= 0, e.g. "
            f"seeds=[0,1,2,3] (one run: seed=<s>)"
        )
    if cfg.collector.name != "single":
        raise ConfigError(
            f"invalid collector={cfg.collector.name} with seeds={shown}: a population steps its envs together in "
            f"one process; use collector=single"
        )
    if cfg.get("grad_clip"):
        raise ConfigError(
            f"invalid grad_clip={cfg.grad_clip} with seeds={shown}: a population has no gradient-norm clipping (one "
            f"norm would couple its members); use grad_clip=null"
        )
