"""``GET /v1/insights``: what the planner learned for the caller's workspace: plan templates,
plan reuse, tool preference (success rate, latency) and failure patterns."""

from __future__ import annotations

from typing import Any

from baton_common.insights import InsightsReply, InsightsRequest, insights_subject
from fastapi import APIRouter, Depends, HTTPException

from baton_gateway.domain import Principal
from baton_gateway.routes.deps import Reader, services_of
from baton_gateway.routes.rpc import ask
from baton_gateway.services import Services

router = APIRouter(prefix="/v1/insights", tags=["insights"])


@router.get("")
async def insights(who: Principal = Reader, s: Services = Depends(services_of)) -> dict[str, Any]:
    subject = insights_subject(s.bus.settings.subject_root)
    reply = await ask(
        s, subject, InsightsRequest(workspace_id=who.workspace_id), InsightsReply, "the planner"
    )
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    return reply.body
