"""Compare: the offline planner's plan and the model's for the same words, side by side, with
their differences (steps added, removed, renamed, changed: ``diff.py``); nothing runs and
nothing is recorded.

The gateway's ``POST /v1/plans/compare`` asks for one over the planner's request/reply subject
(``PlanCall`` op ``compare``). A side that cannot plan says why; the other is still shown.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from baton_common import contracts as c

from baton_planner.diff import diff_plans
from baton_planner.drafting import draft, words_of
from baton_planner.planners import Planner, PlanningError

NO_MODEL = (
    "no LLM planner is configured, so there is nothing to compare the offline plan with: set "
    "BATON_LLM_MODEL with OPENAI_BASE_URL (Ollama, vLLM, llama.cpp, LM Studio) or "
    "OPENAI_API_KEY (a hosted API), or GEMINI_API_KEY, and restart the planner (docs/planners.md)"
)


@dataclass(frozen=True)
class Comparison:
    """The two planners compared: the offline one and the configured model's (None: none)."""

    offline: Planner
    model: Planner | None

    async def reply(self, call: c.PlanCall) -> c.PlanReply:
        """Both plans and their differences, a 409 when no model is configured, or a 422 for
        a call without words."""
        words = words_of(call)
        if isinstance(words, c.PlanReply):
            return words
        if self.model is None:
            return c.PlanReply(status=409, detail=NO_MODEL)
        offline, model = await asyncio.gather(
            _side(self.offline, *words), _side(self.model, *words)
        )
        both = "plan" in offline and "plan" in model
        body = {
            "offline": offline,
            "llm": model,
            "differences": diff_plans(offline["plan"], model["plan"]) if both else None,
        }
        return c.PlanReply(status=200, body=body)


async def _side(planner: Planner, request: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """One planner's plan with who made it and why each step is there, or why it could not."""
    try:
        made, explanation = await draft(planner, request, inputs)
    except PlanningError as exc:
        details = getattr(exc, "details", None)
        refusal = details() if callable(details) else {}
        return {"planner": planner.name, "error": str(exc), **refusal}
    return {**made.facts(), "plan": made.plan, "explanation": explanation}
