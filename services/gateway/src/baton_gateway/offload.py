"""CPU-heavy checks of user input (reading and validating plans) run off the event loop.

Each check is linear in its input and the input is bounded (``baton_common.documents``), but a
megabyte of YAML is still about a second of CPU. On the event loop, that second would stall every
other request, ``/readyz`` included, and a few such requests at once would stop the gateway. So
checks run in a small pool of their own threads (the event loop keeps its share of the CPU),
a few at a time, each within a budget: one that cannot start in time is a 503 (try again), one
that runs past it a 422 (make the document smaller). A check past its budget still finishes in
its thread, but no more than ``BATON_CHECK_WORKERS`` run at once.
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


@functools.cache
def _pool() -> tuple[ThreadPoolExecutor, float]:
    settings = CheckSettings()
    return ThreadPoolExecutor(settings.workers, "baton-check"), settings.budget_s


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
