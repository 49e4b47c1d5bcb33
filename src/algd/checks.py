"""The rule vocabulary of the config schema (:mod:`algd.schema`): a rule per value, relations between values, and
:func:`enforce` for constructors that check their own arguments against the same schema."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    """A predicate on one value and what it requires, in words (``must be <text>``)."""

    ok: Callable[[Any], bool]
    text: str

    def __call__(self, value) -> bool:
        return bool(self.ok(value))


@dataclass(frozen=True)
class Relation:
    """A rule on ``key`` that depends on other arguments: ``ok(values)``, ``text(values)``."""

    key: str
    ok: Callable[[dict], bool]
    text: Callable[[dict], str]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(low: int, why: str | None = None) -> Rule:
    return Rule(lambda v: _is_int(v) and v >= low, why or f"an integer >= {low}")


def number(low: float, high: float | None = None, low_open: bool = False, why: str | None = None) -> Rule:
    bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")

    def ok(v):
        return _is_num(v) and (v > low if low_open else v >= low) and (high is None or v <= high)

    return Rule(ok, why or f"a number {bounds}")


def optional(rule: Rule, text: str) -> Rule:
    """``rule``, or null."""
    return Rule(lambda v: v is None or rule(v), text)


def one_of(*choices, text: str | None = None) -> Rule:
    return Rule(lambda v: v in choices, text or f"one of {', '.join(map(str, choices))}")


def widths() -> Rule:
    return Rule(
        lambda v: len(v) >= 1 and all(_is_int(w) and w >= 1 for w in v), "a non-empty list of positive layer widths"
    )


def failures(rules: dict[str, Rule], relations: tuple[Relation, ...], values: dict):
    """(key, value, text) of each rule that ``values`` break, in order (keys absent from ``values`` are skipped)."""
    for key, rule in rules.items():
        if key in values and not rule(values[key]):
            yield key, values[key], rule.text
    for rel in relations:
        if not rel.ok(values):
            yield rel.key, values[rel.key], rel.text(values)


def enforce(schema, prefix: str, **values) -> None:
    """A constructor's own check: ``ValueError`` naming ``<prefix>.<key>`` on the first rule or relation of
    ``schema`` (an :class:`algd.schema.Schema`) that ``values`` break."""
    for key, value, text in failures(schema.rules, schema.relations, values):
        raise ValueError(f"{prefix}.{key} must be {text}, got {value}")
