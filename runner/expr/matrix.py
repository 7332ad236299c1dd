"""Expanding a rendered `matrix:` into its instances, with GitHub Actions' include and exclude."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any

from runner.expr.templates import to_text

if TYPE_CHECKING:
    from runner.masking import Masker

SETTINGS = ("include", "exclude", "max_parallel", "fail_fast", "max_instances")
DEFAULT_MAX_INSTANCES = 256


class MatrixError(Exception):
    """A rendered matrix that cannot be expanded; `key` is the entry at fault, if one is."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


def expand(matrix: dict[str, Any]) -> list[dict[str, Any]]:
    """The instances of a rendered matrix, in matrix order.

    The product of the axes, less every combination that matches an `exclude`
    entry; then each `include` entry either extends every combination whose
    original values it matches without overwriting them, or is added as a new
    instance of its own, which later entries do not extend.
    """
    axes = {k: v for k, v in matrix.items() if k not in SETTINGS}
    for name, values in axes.items():
        if not isinstance(values, list):
            raise MatrixError(f"axis `{name}` must be a list, got {type(values).__name__}", name)
    if axes:
        names = list(axes)
        combos = [dict(zip(names, values)) for values in itertools.product(*axes.values())]
    else:
        combos = []
    excludes = _entries(matrix.get("exclude"), "exclude")
    combos = [c for c in combos if not any(_matches(c, e) for e in excludes)]
    # Only combinations of the axes are extended; an entry added as an instance of
    # its own stays as it is.
    product = [(combo, dict(combo)) for combo in combos]
    for entry in _entries(matrix.get("include"), "include"):
        extended = False
        for combo, original in product:
            # An entry may add keys to a combination, but never overwrite its axis values.
            if all(combo.get(k, v) == v for k, v in entry.items() if k in original):
                combo.update({k: v for k, v in entry.items() if k not in original})
                extended = True
        if not extended:
            combos.append(dict(entry))
    limit = matrix.get("max_instances", DEFAULT_MAX_INSTANCES)
    if len(combos) > limit:
        raise MatrixError(f"the matrix expands to {len(combos)} instances, more than {limit} (raise `max_instances`)")
    return combos


def _entries(value: Any, key: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
        raise MatrixError(f"`{key}` must be a list of mappings", key)
    return value


def _matches(combo: dict, entry: dict) -> bool:
    return all(k in combo and combo[k] == v for k, v in entry.items())


def label(job_id: str, values: dict[str, Any]) -> str:
    """``build (shard=1, py=3.12)``: how an instance is named in logs and results."""
    inner = ", ".join(f"{k}={_short(v)}" for k, v in values.items())
    return f"{job_id} ({inner})"


def labels(job_id: str, combos: list[dict[str, Any]], masker: Masker | None) -> list[str]:
    """Each instance's label, secrets in its values masked (a name is printed everywhere);
    instances whose labels would read the same get their position added."""
    names = [label(job_id, masker.value(values, numbers=True) if masker else values) for values in combos]
    counts = Counter(names)
    return [f"{name} #{position}" if counts[name] > 1 else name for position, name in enumerate(names, 1)]


def _short(value: Any) -> str:
    text = to_text(value)
    return text if len(text) <= 30 else text[:27] + "..."
