"""Planners turn a plain-language request into plan data that passes ``validate_plan``.

``select_planner`` picks Gemini when GEMINI_API_KEY (or GOOGLE_API_KEY) is set and the offline
planner otherwise. An unreachable Gemini is an error unless BATON_PLANNER_FALLBACK=offline: a
deployment that configured a model should not silently get worse plans.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue, ToolStats

if TYPE_CHECKING:
    from baton_planner.offline import PlanMemory

log = logging.getLogger(__name__)


class PlanningError(Exception):
    """No valid plan could be made; the message says why, ``problems`` lists validation errors.

    ``transient`` marks a model that cannot be reached or is failing for now (not a bad key or an
    impossible request): the only case a fallback planner may step in.
    """

    def __init__(
        self, message: str, *, problems: Sequence[str] = (), transient: bool = False
    ) -> None:
        super().__init__(message)
        self.problems = list(problems)
        self.transient = transient


@runtime_checkable
class Planner(Protocol):
    """Makes plan data (a dict) for a request; raises ``PlanningError`` when it cannot."""

    name: str

    async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]: ...


class FallbackPlanner:
    """Uses ``primary``; only when its model is unreachable (transient), uses ``fallback``."""

    def __init__(self, primary: Planner, fallback: Planner) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}+{fallback.name}-fallback"

    async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The primary's plan, or the fallback's when the primary is unreachable."""
        try:
            return await self.primary.plan(request, inputs)
        except PlanningError as exc:
            if not exc.transient:
                raise
            log.warning(
                "planner %s unreachable, using %s: %s", self.primary.name, self.fallback.name, exc
            )
            return await self.fallback.plan(request, inputs)

    def remember(self, request: str, plan: Mapping[str, Any]) -> None:
        """Both planners learn the plan (once if they share a memory)."""
        memories = [getattr(p, "memory", None) for p in (self.primary, self.fallback)]
        for i, memory in enumerate(memories):
            if memory is not None and all(memory is not m for m in memories[:i]):
                memory.remember(request, plan)


def select_planner(
    catalogue: Catalogue = DEFAULT_CATALOGUE,
    memory: PlanMemory | None = None,
    env: dict[str, str] | None = None,
    stats: Mapping[str, ToolStats] | None = None,
) -> Planner:
    """Gemini if a key is set (offline fallback only if asked for), else the offline planner."""
    from baton_common.gemini import gemini_from_env

    from baton_planner.gemini import GeminiPlanner
    from baton_planner.offline import OfflinePlanner, PlanMemory

    env = dict(os.environ) if env is None else env
    memory = memory if memory is not None else PlanMemory()  # one memory, whichever plans
    offline = OfflinePlanner(catalogue, memory=memory, stats=stats)  # stats: a tie breaker
    client = gemini_from_env(env)
    if client is None:
        return offline
    gemini = GeminiPlanner(client, catalogue, memory=memory)
    if env.get("BATON_PLANNER_FALLBACK", "").strip().lower() == "offline":
        return FallbackPlanner(gemini, offline)
    return gemini
