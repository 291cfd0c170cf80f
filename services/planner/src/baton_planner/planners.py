"""Planners turn a plain-language request into plan data that passes ``validate_plan``.

What every planner shares: the ``Planner`` protocol, ``PlanningError``, ``Answer`` (a plan with
who made it and what it cost: ``answer``) and ``FallbackPlanner`` (a model's planner that hands
over to another while its model is unreachable). Which planner a
deployment uses is picked in ``selection.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from baton_common.prices import PricesInvalid, cost_usd, llm_prices

if TYPE_CHECKING:
    from baton_common.chatmodel import Completion

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


@dataclass(frozen=True)
class Answer:
    """A plan and who made it: the planner, its model (None for the offline planner), how many
    model calls it took (``attempts``: 1 is right the first time) and their tokens."""

    plan: dict[str, Any]
    planner: str
    model: str | None = None
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: bool = False  # tokens estimated from the text: the server did not count them
    remembered: bool = False  # a plan this planner learned, given again without asking

    @classmethod
    def spent(
        cls, plan: dict[str, Any], planner: str, model: str, attempts: int, calls: list[Completion]
    ) -> Answer:
        """The answer a model gave after ``calls``."""
        return cls(
            plan,
            planner,
            model,
            attempts,
            sum(c.input_tokens for c in calls),
            sum(c.output_tokens for c in calls),
            any(c.estimated for c in calls),
        )

    def label(self) -> str:
        """The planner and its model in one word, as a plan's events record it."""
        return self.planner if self.model is None else f"{self.planner} ({self.model})"

    def usage(self) -> dict[str, Any] | None:
        """What the model calls spent, as ``plan.proposed`` records it (None: no model call)."""
        if self.model is None or self.attempts == 0:
            return None
        return {
            "model": self.model,
            "attempts": self.attempts,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "estimated": self.estimated,
        }

    def facts(self) -> dict[str, Any]:
        """Who answered and at what cost, as ``baton plan`` and the draft API show it."""
        facts: dict[str, Any] = {"planner": self.planner, "model": self.model}
        if self.model is not None:
            rows = [(self.model, self.input_tokens, self.output_tokens)]
            facts["attempts"] = self.attempts
            facts["repairs"] = max(self.attempts - 1, 0)
            facts["remembered"] = self.remembered
            facts["usage"] = {
                "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens,
                "estimated": self.estimated,
                "cost_usd": _cost(rows),
            }
        return facts


def _cost(rows: Sequence[tuple[str | None, int, int]]) -> float | None:
    """At BATON_LLM_PRICES; None when it does not read (the gateway refuses to start then)."""
    try:
        return cost_usd(rows, llm_prices())
    except PricesInvalid:
        return None


async def answer(planner: Planner, request: str, inputs: dict[str, Any]) -> Answer:
    """The plan with who made it: a model's planner says more, any other one its name."""
    answers = getattr(planner, "answer", None)
    if answers is not None:
        made: Answer = await answers(request, inputs)
        return made
    return Answer(await planner.plan(request, inputs), planner.name)


class FallbackPlanner:
    """Uses ``primary``; only when its model is unreachable (transient), uses ``fallback``."""

    def __init__(self, primary: Planner, fallback: Planner) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}+{fallback.name}-fallback"

    async def plan(self, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """The primary's plan, or the fallback's when the primary is unreachable."""
        return (await self.answer(request, inputs)).plan

    async def answer(self, request: str, inputs: dict[str, Any]) -> Answer:
        """The primary's answer, or the fallback's (saying so) when the primary is unreachable."""
        try:
            return await answer(self.primary, request, inputs)
        except PlanningError as exc:
            if not exc.transient:
                raise
            log.warning(
                "planner %s unreachable, using %s: %s", self.primary.name, self.fallback.name, exc
            )
            return await answer(self.fallback, request, inputs)

    def remember(self, request: str, plan: Mapping[str, Any]) -> None:
        """Both planners learn the plan (once if they share a memory)."""
        memories = [getattr(p, "memory", None) for p in (self.primary, self.fallback)]
        for i, memory in enumerate(memories):
            if memory is not None and all(memory is not m for m in memories[:i]):
                memory.remember(request, plan)
