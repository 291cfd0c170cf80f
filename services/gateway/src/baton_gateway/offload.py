"""CPU-heavy checks of user input (reading and validating plans) run off the event loop.

Each check is linear in its input and the input is bounded (``baton_common.documents``), but a
megabyte of YAML is still about a second of CPU. On the event loop, that second would stall every
other request, ``/readyz`` included, and a few such requests at once would stop the gateway. So
checks run in a small pool of their own threads (the event loop keeps its share of the CPU),
a few at a time, each within a budget: one that cannot start in time is a 503 (try again), one
that runs past it a 422 (make the document smaller). A check past its budget still finishes in
its thread, but no more than ``BATON_CHECK_WORKERS`` run at once.

A small document is checked on the loop itself (``checked``): under ``BATON_CHECK_INLINE_BYTES``
(4 KiB) a plan given as JSON is checked in well under a millisecond, less than the hop to a
checking thread and back costs on a busy machine (issue 32: a submission in words spent 0.3 to 1 ms
in that hop for a check of a few microseconds). Plans given as text (YAML) always go off the loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from baton_gateway.domain import Busy, Invalid

T = TypeVar("T")


class CheckSettings(BaseSettings):
    """How many checks run at once, and how long one may take (waiting included)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")
    workers: int = Field(2, ge=1, le=64, alias="BATON_CHECK_WORKERS")
    budget_s: float = Field(10.0, gt=0, le=600, alias="BATON_CHECK_BUDGET_S")
    inline_bytes: int = Field(4096, ge=0, le=65536, alias="BATON_CHECK_INLINE_BYTES")


@functools.cache
def _pool() -> tuple[ThreadPoolExecutor, float]:
    settings = CheckSettings()
    return ThreadPoolExecutor(settings.workers, "baton-check"), settings.budget_s


@functools.cache
def inline_bytes() -> int:
    """Documents up to this size are checked on the event loop (0: none)."""
    return CheckSettings().inline_bytes


async def checked(size: int | None, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the loop when the document is known to be small (``size``: its bytes,
    None when unknown), else ``off_loop``."""
    if size is not None and size <= inline_bytes():
        return fn(*args)
    return await off_loop(fn, *args)


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the checking pool, within the budget; its own errors pass through."""
    pool, budget = _pool()
    future = pool.submit(fn, *args)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(future), budget)
    except TimeoutError:
        if future.cancelled():  # never started: others' checks held every worker
            raise Busy("busy checking other documents; try again in a moment") from None
        raise Invalid(
            f"the document took more than {budget:g} s to check; make it smaller"
        ) from None
