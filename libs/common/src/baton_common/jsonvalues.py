"""Walking a JSON-like value: dicts, lists and scalars, at any depth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def map_strings(value: Any, fn: Callable[[str], Any]) -> Any:
    """``value`` with ``fn`` applied to every string in it (a dict's values and a list's or a
    tuple's items, at any depth: a tuple comes back a list); anything else as it is."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_strings(v, fn) for v in value]
    return value
