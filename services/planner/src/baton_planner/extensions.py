"""What the planner adds for plugins and the agent registry.

- ``on_execution_end`` hooks of the plugins a workspace runs (the plan hooks, which the gateway
  calls too, are ``baton_common.planhooks``).
- The registry's figures per tool (``tool_attempts`` read model), handed to the planner before it
  plans, so among tools that fit a task it prefers the one that succeeds more and answers faster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from baton_common.plugins import plugin_host
from baton_common.toolstats import AgentStats, StatsReader
from baton_common.workspaces import WorkspacePolicy

log = logging.getLogger(__name__)


def tool_stats(figures: list[AgentStats]) -> dict[str, Any]:
    """The registry's rows as the planner's ``ToolStats`` (tools with a finished call only)."""
    from baton_common.catalogue import ToolStats

    return {
        f.name: ToolStats(calls=f.calls, success_rate=f.success_rate, p50_ms=f.p50_ms)
        for f in figures
        if f.success_rate is not None
    }


class StatsFeed:
    """Hands the planner the workspace's figures before it plans (read model, cached briefly)."""

    def __init__(self, reader: StatsReader | Callable[[str], list[AgentStats]]) -> None:
        self.read = reader.get if isinstance(reader, StatsReader) else reader
        self._last: dict[str, Any] = {}

    async def give(self, planner: Any, workspace_id: str) -> Mapping[str, Any]:
        try:
            figures = await asyncio.to_thread(self.read, workspace_id)
            stats = tool_stats(figures)
        except Exception as exc:  # planning goes on without figures
            log.warning("tool figures unavailable: %s", exc)
            stats = {}
        if stats == self._last:
            stats = self._last  # the same object: the planner keeps its matcher
        self._last = stats
        for target in _offline_planners(planner):
            target.stats = stats
        return stats


def _offline_planners(planner: Any) -> list[Any]:
    """The planner and those it wraps (a fallback) that take figures."""
    found = [
        p
        for p in (planner, getattr(planner, "primary", None), getattr(planner, "fallback", None))
        if p is not None
    ]
    return [p for p in found if hasattr(p, "stats")]


ENDINGS = {
    "execution.succeeded": "succeeded",
    "execution.failed": "failed",
    "execution.cancelled": "cancelled",
}


class EndHooks:
    """``on_execution_end`` of the workspace's plugins, off the planner's consumer path: a slow
    hook must not hold up planning, so each call runs as a task of its own (at least once: a
    redelivered end calls it again)."""

    def __init__(self, policy_of: Callable[[str], WorkspacePolicy] | None) -> None:
        self.policy_of = policy_of
        self.running: set[asyncio.Task[None]] = set()

    def ended(self, event: Any) -> None:
        status = ENDINGS.get(getattr(event, "type", ""))
        if status is None or self.policy_of is None or not plugin_host().names():
            return
        task = asyncio.create_task(self._call(event, status))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _call(self, event: Any, status: str) -> None:
        assert self.policy_of is not None
        policy = await asyncio.to_thread(self.policy_of, event.workspace_id)
        if not policy.plugins:
            return
        for outcome in await plugin_host().call(
            "on_execution_end",
            policy.plugins,
            execution_id=str(event.aggregate_id),
            status=status,
            workspace_id=event.workspace_id,
        ):
            if outcome.error is not None:
                log.warning("on_execution_end hook failed: %s", outcome.error)


def order_alternatives(plan: dict[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    """Each step's alternatives, best first by the registry's figures: higher success rate, then
    lower p50; tools without figures keep their place after those with some (a stable sort)."""
    if not stats:
        return plan

    def rank(call: Any) -> tuple[float, float]:
        known = stats.get(str(call.get("tool"))) if isinstance(call, dict) else None
        if known is None:
            return (1.0, 0.0)  # unknown: after every known one, in the planner's order
        return (-known.success_rate, known.p50_ms if known.p50_ms is not None else float("inf"))

    for step in plan.get("steps", []):
        alternatives = step.get("alternatives") if isinstance(step, dict) else None
        if isinstance(alternatives, list) and len(alternatives) > 1:
            step["alternatives"] = sorted(alternatives, key=rank)
    return plan
