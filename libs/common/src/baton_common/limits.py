"""Size limits: what a caller may send, and what may become an event, checked before storing.

Every field that a caller can fill and that is carried in an event has a limit well below the
bus's message limit (NATS ``max_payload``, 1 MiB by default), so a request can never commit an
event the relay could not publish. The store's last check (``max_event``) catches anything a
field limit missed; the relay parks what the bus still refuses (see ``relay.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import pydantic_core
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

KiB = 1024
MiB = 1024 * KiB


class Limits(BaseSettings):
    """The installation's size limits in bytes (environment variables, defaults below)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    request: int = Field(2 * MiB, alias="BATON_MAX_REQUEST_BYTES", gt=0)
    inputs: int = Field(256 * KiB, alias="BATON_MAX_INPUTS_BYTES", gt=0)
    plan: int = Field(256 * KiB, alias="BATON_MAX_PLAN_BYTES", gt=0)
    step_output: int = Field(512 * KiB, alias="BATON_MAX_STEP_OUTPUT_BYTES", gt=0)
    context_value: int = Field(64 * KiB, alias="BATON_MAX_CONTEXT_VALUE_BYTES", gt=0)
    # The store's last check on one encoded event: below NATS's default max_payload (1 MiB),
    # leaving room for the message's subject and headers.
    event: int = Field(1000 * KiB, alias="BATON_MAX_EVENT_BYTES", gt=0)


@functools.cache
def limits() -> Limits:
    """The limits, read from the environment once per process."""
    return Limits()


ENVELOPE_ROOM = 16 * KiB  # an event's own fields beside the one large value it carries


def one_event() -> int:
    """The most one value may take in an event that carries it with little else (a step's
    resolved input, an execution's outputs): what BATON_MAX_EVENT_BYTES leaves."""
    return limits().event - ENVELOPE_ROOM


class TooLarge(ValueError):
    """A value over its limit; the message names the field, its size and the limit."""

    def __init__(self, field: str, size: int, limit: int) -> None:
        self.field, self.size, self.limit = field, size, limit
        shown, most = human(size), human(limit)
        if shown == most:  # just over: rounding would hide the difference
            shown, most = f"{size:,} bytes", f"{limit:,} bytes"
        super().__init__(f"{field} is {shown}, the limit is {most}")


def json_size(value: Any) -> int:
    """The size of ``value`` as compact JSON (as it is stored in an event)."""
    return len(pydantic_core.to_json(value))


def check_size(field: str, value: Any, limit: int) -> int:
    """``value``'s size as JSON, or ``TooLarge`` naming ``field``."""
    return check_bytes(field, json_size(value), limit)


def check_bytes(field: str, size: int, limit: int) -> int:
    """``size`` itself, or ``TooLarge`` naming ``field``."""
    if size > limit:
        raise TooLarge(field, size, limit)
    return size


def human(size: int) -> str:
    """``262144`` -> ``256 KiB``; ``1258291`` -> ``1.2 MiB``."""
    for unit, scale in (("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"
