"""The audit trail (who did what, when: derived from the events) and per-workspace counts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from baton_common.archive import ArchiveError
from baton_common.archived import Archives
from baton_common.store import run_sync
from fastapi import APIRouter, Depends, HTTPException, Query

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


@router.get("/v1/audit/archived")
async def audit_archived_days(
    who: Principal = Auditor, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """The days of this workspace's audit trail that are in the archive (past
    ``BATON_AUDIT_RETENTION_DAYS``), newest first: parts and rows of each."""
    return {"items": await run_sync(_archives(s).audit_days, who.workspace_id)}


@router.get("/v1/audit/archived/{day}")
async def audit_archived_day(
    day: date,
    who: Principal = Auditor,
    s: Services = Depends(services_of),
    actor: str | None = Query(None, max_length=200, pattern=r"^[^\x00]*$"),
) -> dict[str, Any]:
    """Every archived audit row of a day (UTC, ``YYYY-MM-DD``), newest first, read from the
    archive and checked against its checksums; 404 for a day with none archived."""
    try:
        items = await run_sync(_archives(s).audit_day, who.workspace_id, day, actor)
    except ArchiveError as exc:
        raise HTTPException(503, str(exc)) from None
    if items is None:
        raise HTTPException(404, f"no audit rows of {day.isoformat()} are in the archive")
    return {"day": day.isoformat(), "items": items}


def _archives(s: Services) -> Archives:
    if s.archives is None:
        raise HTTPException(503, "this gateway has no archive configured")
    return s.archives


@router.get("/v1/stats")
async def stats(who: Principal = Reader, s: Services = Depends(services_of)) -> dict[str, Any]:
    """The caller's workspace's executions by status."""
    return {"workspace_id": who.workspace_id, "executions": await s.reader.counts(who.workspace_id)}


def _iso(value: datetime) -> str:
    return value.isoformat()
