"""Callables for agent files (``implementation: {python: ...}``)."""

import os
from typing import Any


def whoami(input: dict[str, Any]) -> dict[str, Any]:
    """Which worker process answered."""
    return {"pid": os.getpid(), "said": input.get("text", "")}


def fails(input: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("this agent always fails")
