"""``time.sleep`` and ``mock.agent``, plus the spec lookup every built-in tool uses."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from baton_common.catalogue import DEFAULT_CATALOGUE, ToolSpec

from baton_executor.tools.base import ToolContext, ToolError


def catalogue_spec(name: str) -> ToolSpec:
    """The catalogue's spec for ``name``; fails at import if the catalogue lost it."""
    spec = DEFAULT_CATALOGUE.get(name)
    if spec is None:
        raise LookupError(f"tool {name!r} is not in the catalogue")
    return spec


class TimeSleep:
    """Waits ``seconds``."""

    spec = catalogue_spec("time.sleep")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Sleep, then report how long."""
        seconds = float(input["seconds"])
        await asyncio.sleep(seconds)
        return {"slept": seconds}


class MockAgent:
    """A fake agent with scripted latency, failures and output, deterministic per attempt."""

    spec = catalogue_spec("mock.agent")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Wait, maybe fail, then return the scripted or default result."""
        await _scripted_latency(input)
        task = str(input.get("task", ""))
        _maybe_fail(input, ctx)
        result = input["output"] if "output" in input else f"done: {task}"
        return {"result": result, "task": task, "attempt": ctx.attempt}


class MockCritical:
    """An irreversible action stand-in: it only ever runs after an approval gate opened."""

    spec = catalogue_spec("mock.critical")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Wait the scripted latency, then say what was done (under which key)."""
        await _scripted_latency(input)
        what = " ".join(str(input[k]) for k in ("action", "target", "amount") if k in input)
        return {"done": f"{what} (key {ctx.idempotency_key})", "calls": 1}


async def _scripted_latency(input: dict[str, Any]) -> None:
    """Wait the input's ``latency_ms``, if it gives one."""
    latency_ms = float(input.get("latency_ms", 0))
    if latency_ms:
        await asyncio.sleep(latency_ms / 1000)


def _maybe_fail(input: dict[str, Any], ctx: ToolContext) -> None:
    """Raise a retryable error for attempts 1..fail_times, or by the seeded failure rate."""
    fail_times = int(input.get("fail_times", 0))
    if ctx.attempt <= fail_times:
        raise ToolError(f"mock.agent: scripted failure {ctx.attempt} of {fail_times}")
    rate = float(input.get("failure_rate", 0))
    # Seeded by key and attempt so a replay of the same attempt fails (or not) the same way.
    if rate and random.Random(f"{ctx.idempotency_key}:{ctx.attempt}").random() < rate:
        raise ToolError(f"mock.agent: random failure (rate {rate}) on attempt {ctx.attempt}")
