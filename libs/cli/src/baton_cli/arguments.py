"""Values read from the command line: ``--input key=value`` pairs and saved-plan names."""

from __future__ import annotations

import json
from typing import Any

from baton_cli.errors import CliError


def parse_inputs(pairs: list[str] | None) -> dict[str, Any]:
    """``--input`` pairs as inputs: a value that reads as JSON is JSON, else text."""
    inputs: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--input takes key=value, got {pair!r}")
        try:
            inputs[key] = json.loads(value)
        except ValueError:
            inputs[key] = value
    return inputs


def saved_ref(text: str) -> dict[str, Any]:
    from baton_common.contracts.plans import parse_plan_ref

    try:
        return parse_plan_ref(text)
    except ValueError as exc:
        raise CliError(str(exc)) from None
