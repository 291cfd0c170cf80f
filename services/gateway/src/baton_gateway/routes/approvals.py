"""Approval gates: the inbox, one gate, and a decision (approve, reject, edit; a question of the
planner's is answered in words: ``answer``).

A decision is forwarded to the hitl service, which owns the gate, over NATS request/reply: it
commits the decision before it answers, so the caller learns at once whether the gate was still
open (409), whether they may decide (403) and whether an edited input fits the tool (422).
Deciding needs the permission ``approve`` here already; an edited plan (a plan review's gate)
is checked against the workspace's policy before it is forwarded, and again by the executor.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from baton_common.approvals import PLAN_TOOL, DecisionReply, DecisionRequest, rpc_subject
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.plans import PlanInvalid, validate_plan
from baton_common.workspaces import policy_problems
from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from baton_gateway.domain import NotFound, Principal
from baton_gateway.routes.deps import Approver, Reader, policy_of, services_of
from baton_gateway.routes.rpc import ask
from baton_gateway.services import Services

router = APIRouter(prefix="/v1/approvals", tags=["approvals"])


class DecisionBody(BaseModel):
    """``approve``; ``reject`` (say why in ``comment``); ``edit``: approve with a new ``input``;
    ``answer``: a question of the planner's answered in words (``answer``)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [
                {
                    "properties": {
                        "decision": {"const": "edit"},
                        "input": {"type": "object"},
                        "answer": {"type": "null"},
                    },
                    "required": ["input"],
                },
                {
                    "properties": {
                        "decision": {"const": "answer"},
                        "answer": {"type": "string", "minLength": 1, "pattern": "\\S"},
                        "input": {"type": "null"},
                    },
                    "required": ["answer"],
                },
                {
                    "properties": {
                        "decision": {"enum": ["approve", "reject"]},
                        "input": {"type": "null"},
                        "answer": {"type": "null"},
                    }
                },
            ]
        },
    )
    decision: Literal["approve", "reject", "edit", "answer"]
    input: dict[str, Any] | None = None
    comment: str | None = Field(None, max_length=5000)
    answer: str | None = Field(
        None, max_length=5000, description="decision answer: the planner's question answered"
    )

    @model_validator(mode="after")
    def _input_for_edit(self) -> DecisionBody:
        if (self.decision == "edit") != (self.input is not None):
            raise ValueError("'input' is given with decision 'edit', and only then")
        if (self.decision == "answer") != bool((self.answer or "").strip()):
            raise ValueError("'answer' is given, not empty, with decision 'answer', and only then")
        return self


@router.get("")
async def list_approvals(
    who: Principal = Reader,
    s: Services = Depends(services_of),
    status: Literal["pending", "granted", "rejected", "cancelled", "answered"] | None = None,
    execution: UUID | None = Query(None, description="only this execution's gates"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """The workspace's gates, newest first (``status=pending``: the inbox)."""
    return {"items": await s.reader.approvals(who.workspace_id, status, execution, limit)}


@router.get("/{approval_id}")
async def get_approval(
    approval_id: UUID, who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """What is asked, the resolved input, the policy, the deadline, and the history."""
    view = await s.reader.approval(approval_id)
    if view is None or view["workspace_id"] != who.workspace_id:
        raise NotFound(f"no approval {approval_id}")
    return view


@router.post("/{approval_id}/decision")
async def decide(
    approval_id: UUID,
    body: DecisionBody,
    who: Principal = Approver,
    s: Services = Depends(services_of),
) -> JSONResponse:
    view = await s.reader.approval(approval_id)
    if view is not None and view["workspace_id"] != who.workspace_id:
        raise NotFound(f"no approval {approval_id}")  # the hitl service would say so too
    # a gate not projected yet may be a plan's review too: an edited plan is checked then
    if body.decision == "edit" and (view or {}).get("tool", PLAN_TOOL) == PLAN_TOOL:
        await _plan_allowed(s, who, body.input or {})
    request = DecisionRequest(
        approval_id=str(approval_id),
        workspace_id=who.workspace_id,
        user=who.name,
        role=who.role,
        decision=body.decision,
        input=body.input,
        comment=body.comment,
        answer=body.answer,
    )
    reply = await ask_hitl(s, request)
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    return JSONResponse({"detail": reply.detail, "approval": reply.approval}, 200)


async def _plan_allowed(s: Services, who: Principal, edited: dict[str, Any]) -> None:
    """An edited plan may not bring in a tool the workspace (or the installation) refuses."""
    raw = edited.get("plan")
    if not isinstance(raw, dict):
        return  # not a plan: the hitl service names the problem
    try:
        plan = validate_plan(raw, DEFAULT_CATALOGUE)
    except PlanInvalid:
        return  # the hitl service names every problem of an invalid plan
    if problems := policy_problems(plan, await policy_of(s, who.workspace_id)):
        raise PlanInvalid(problems)


async def ask_hitl(s: Services, request: DecisionRequest) -> DecisionReply:
    """One decision, answered by whichever hitl replica takes it (503 when none is up)."""
    subject = rpc_subject(s.bus.settings.subject_root)
    return await ask(s, subject, request, DecisionReply, "the approval service (hitl)")
