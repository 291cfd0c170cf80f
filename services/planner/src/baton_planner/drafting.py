"""Drafts: the plan the planner would make for a request in words, with why each step is there;
nothing runs and nothing is recorded.

The gateway's ``POST /v1/plans/draft`` asks for one over the planner's request/reply subject
(``PlanCall`` op ``draft``), so the gateway holds no planner of its own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from baton_common import contracts as c

from baton_planner.planners import Answer, Planner, PlanningError, answer

Explanation = list[dict[str, Any]]


async def draft(planner: Any, request: str, inputs: dict[str, Any]) -> tuple[Answer, Explanation]:
    """A planner that explains itself (the offline one) says why; for others, the step's own
    description is the reason given."""
    explains = getattr(planner, "draft", None)  # the offline planner: words to a plan, all CPU
    if explains is not None:
        made = await asyncio.to_thread(explains, request, inputs)
        return Answer(made.plan, planner.name), made.explanation_data()
    explain = getattr(planner, "explain", None)
    if explain is not None:
        made = await explain(request, inputs)
        return Answer(made.plan, planner.name), made.explanation_data()
    given = await answer(planner, request, inputs)
    return given, [
        {
            "step": step.get("id"),
            "tool": step.get("tool"),
            "task": step.get("description") or "",
            "words": [],
            "why": f"chosen by the {given.label()} planner",
        }
        for step in given.plan.get("steps", [])
        if isinstance(step, dict)
    ]


async def draft_reply(planner: Planner, call: c.PlanCall) -> c.PlanReply:
    """The answer to a ``draft`` call: the plan and its explanation, or a 422 saying why not
    (with what was understood and a suggestion, when the planner can say)."""
    words = words_of(call)
    if isinstance(words, c.PlanReply):
        return words
    try:
        made, explanation = await draft(planner, *words)
    except PlanningError as exc:
        details = getattr(exc, "details", None)
        refusal = details() if callable(details) else {}
        return c.PlanReply(status=422, detail=f"planning failed: {exc}", body=refusal)
    body = {**made.facts(), "plan": made.plan, "explanation": explanation}
    return c.PlanReply(status=200, body=body)


def words_of(call: c.PlanCall) -> tuple[str, dict[str, Any]] | c.PlanReply:
    """The call's request and inputs, or the 422 that says what is missing."""
    body = call.body if isinstance(call.body, dict) else {}
    request, inputs = body.get("request"), body.get("inputs", {})
    if not isinstance(request, str) or not request.strip() or not isinstance(inputs, dict):
        return c.PlanReply(
            status=422, detail=f"a {call.op} needs a request (words) and inputs (an object)"
        )
    return request, inputs
