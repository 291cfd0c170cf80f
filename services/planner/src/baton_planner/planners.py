"""Planners turn a plain-language request into plan data that passes ``validate_plan``.

What every planner shares: the ``Planner`` protocol, ``PlanningError`` and ``FallbackPlanner``
(a model's planner that hands over to another while its model is unreachable). Which planner a
deployment uses is picked in ``selection.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

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
