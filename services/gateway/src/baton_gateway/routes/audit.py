"""The audit trail (who did what, when: derived from the events) and per-workspace counts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query

from baton_gateway.domain import Principal
from baton_gateway.routes.deps import Auditor, Reader, services_of
from baton_gateway.services import Services

router = APIRouter(tags=["audit"])


@router.get("/v1/audit")
async def audit(
    who: Principal = Auditor,
    s: Services = Depends(services_of),
    limit: int = Query(100, ge=1, le=1000),
    before: int | None = Query(None, ge=1, description="cursor: the seq of the last item"),
    # PostgreSQL text cannot hold a NUL: a 422, never a failed query
    actor: str | None = Query(None, max_length=200, pattern=r"^[^\x00]*$"),
) -> dict[str, Any]:
    """Newest first: who (key name and role), what (the event), on what, when."""
    rows = await s.reader.audit(who.workspace_id, limit, before, actor)
    items = [
        {**r, "event_id": str(r["event_id"]), "occurred_at": _iso(r["occurred_at"])} for r in rows
    ]
    return {"items": items, "next_before": items[-1]["seq"] if len(items) == limit else None}


@router.get("/v1/stats")
async def stats(who: Principal = Reader, s: Services = Depends(services_of)) -> dict[str, Any]:
    """The caller's workspace's executions by status."""
    return {"workspace_id": who.workspace_id, "executions": await s.reader.counts(who.workspace_id)}


def _iso(value: datetime) -> str:
    return value.isoformat()
