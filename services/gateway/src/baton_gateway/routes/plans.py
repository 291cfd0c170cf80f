"""Plans and tools: validate a plan, draft one from words, list the tool catalogue."""

from __future__ import annotations

from typing import Annotated, Any

from baton_common.plans import Plan, PlanInvalid, read_plan
from baton_common.workspaces import policy_problems
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from baton_gateway.api import Services
from baton_gateway.domain import Principal
from baton_gateway.offload import off_loop
from baton_gateway.openapi import ValidateField
from baton_gateway.routes.deps import Reader, Runner, policy_of, services_of

router = APIRouter(tags=["plans"])


class PlanDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: str = Field(min_length=1, max_length=20_000)
    inputs: dict[str, Any] = Field(default_factory=dict)


@router.post("/v1/plans/validate")
async def validate(
    body: Annotated[dict[str, Any], ValidateField],
    who: Principal = Reader,
    s: Services = Depends(services_of),
) -> dict[str, Any]:
    """Check a plan (or ``{plan, inputs}``) as an execution would; nothing runs."""
    if "plan" in body and (extra := sorted(set(body) - {"plan", "inputs"})):
        raise HTTPException(422, f"{', '.join(extra)}: not a field of {{plan, inputs}}")
    inputs = body.get("inputs") if "plan" in body else None
    if inputs is not None and not isinstance(inputs, dict):
        raise HTTPException(422, "inputs: an object (the inputs the plan's references need)")
    plan, view = await off_loop(_validated, body.get("plan", body), inputs)
    await _allowed(s, who, plan)
    return {"valid": True, **view}


def _validated(raw: Any, inputs: dict[str, Any] | None) -> tuple[Plan, dict[str, Any]]:
    """The plan read, checked, ordered and shown: the CPU-heavy part, run off the loop."""
    plan = read_plan(raw, inputs)[1]
    return plan, {
        "order": plan.order(),
        "plan": plan.model_dump(mode="json", exclude_defaults=True),
    }


@router.post(
    "/v1/plans/draft",
    responses={422: {"description": "refused: what was understood, what not, a suggestion"}},
)
async def draft(
    body: PlanDraft, who: Principal = Runner, s: Services = Depends(services_of)
) -> Any:
    """The plan the planner would make, with why each step is there; nothing runs. Needs the
    permission ``run``: drafting spends the planner's model calls like a run does."""
    from baton_planner.planners import PlanningError

    try:
        data, explanation = await _draft(s.planner, body)
    except PlanningError as exc:
        details = getattr(exc, "details", None)
        refusal = details() if callable(details) else {}
        return JSONResponse({"detail": f"planning failed: {exc}", **refusal}, 422)
    plan, view = await off_loop(_validated, data, body.inputs)
    await _allowed(s, who, plan)
    return {"planner": s.planner.name, **view, "explanation": explanation}


async def _draft(planner: Any, body: PlanDraft) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A planner that explains itself (the offline one) says why; for others, the step's own
    description is the reason given."""
    draft = getattr(planner, "draft", None)  # the offline planner: words to a plan, all CPU
    if draft is not None:
        made = await off_loop(draft, body.request, body.inputs)
        return made.plan, made.explanation_data()
    explain = getattr(planner, "explain", None)
    if explain is not None:
        made = await explain(body.request, body.inputs)
        return made.plan, made.explanation_data()
    data = await planner.plan(body.request, body.inputs)
    return data, [
        {
            "step": step.get("id"),
            "tool": step.get("tool"),
            "task": step.get("description") or "",
            "words": [],
            "why": f"chosen by the {planner.name} planner",
        }
        for step in data.get("steps", [])
        if isinstance(step, dict)
    ]


async def _allowed(s: Services, who: Principal, plan: Plan) -> None:
    policy = await policy_of(s, who.workspace_id)
    if problems := policy_problems(plan, policy):
        raise PlanInvalid(problems)
