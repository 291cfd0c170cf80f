"""Plans and tools: validate a plan, draft one from words, compare the offline planner's plan
with the model's, list the tool catalogue."""

from __future__ import annotations

from typing import Annotated, Any

from baton_common.plans import Plan, PlanInvalid, read_plan
from baton_common.workspaces import policy_problems
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from baton_gateway.domain import Principal
from baton_gateway.offload import off_loop
from baton_gateway.openapi import ValidateField
from baton_gateway.routes.deps import Reader, Runner, policy_of, services_of
from baton_gateway.routes.saved import call_planner
from baton_gateway.services import Services

router = APIRouter(tags=["plans"])
DRAFT_TIMEOUT_S = 120.0  # a model may take its time; the offline planner answers in milliseconds


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
    # the planner service drafts it: the gateway holds no planner of its own
    reply = await call_planner(s, who, "draft", body=body.model_dump(), timeout_s=DRAFT_TIMEOUT_S)
    if reply.status == 422:
        return JSONResponse({"detail": reply.detail, **(reply.body or {})}, 422)
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    plan, view = await off_loop(_validated, reply.body["plan"], body.inputs)
    await _allowed(s, who, plan)
    made = {k: v for k, v in reply.body.items() if k not in ("plan", "explanation")}
    return {**made, **view, "explanation": reply.body["explanation"]}


@router.post(
    "/v1/plans/compare",
    responses={
        409: {"description": "no LLM planner is configured: nothing to compare with"},
        422: {"description": "no request (words) to plan"},
    },
)
async def compare(
    body: PlanDraft, who: Principal = Runner, s: Services = Depends(services_of)
) -> Any:
    """The offline planner's plan and the LLM planner's for the same request, side by side, with
    their differences (steps added, removed, renamed, changed); nothing runs. A side that could
    not plan says why. Needs the permission ``run``, like a draft."""
    reply = await call_planner(s, who, "compare", body=body.model_dump(), timeout_s=DRAFT_TIMEOUT_S)
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    for side in ("offline", "llm"):
        if "plan" in reply.body[side]:
            plan, view = await off_loop(_validated, reply.body[side]["plan"], body.inputs)
            reply.body[side]["order"] = view["order"]
            await _allowed(s, who, plan)
    return reply.body


async def _allowed(s: Services, who: Principal, plan: Plan) -> None:
    policy = await policy_of(s, who.workspace_id)
    if problems := policy_problems(plan, policy):
        raise PlanInvalid(problems)
