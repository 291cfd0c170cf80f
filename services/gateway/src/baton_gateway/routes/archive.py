"""Archived executions: list, show, restore, and a sweep now (``retention.py`` does the work)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from baton_common.archive import ArchiveError
from baton_common.archived import Archives, SummaryFolded
from baton_common.store import run_sync
from baton_common.workspaces import DEFAULT_WORKSPACE
from fastapi import APIRouter, Depends, HTTPException, Query

from baton_gateway.domain import Forbidden, NotFound, Principal
from baton_gateway.routes.deps import Reader, allowed, services_of
from baton_gateway.routes.executions import Instant, utc_param
from baton_gateway.services import Services

router = APIRouter(prefix="/v1/archive", tags=["archive"])

Manager = Depends(allowed("manage", "restoring an archived execution"))


def _archives(s: Services) -> Archives:
    if s.archives is None:
        raise HTTPException(503, "this gateway has no archive configured")
    return s.archives


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, UUID) else v
        for k, v in row.items()
    }


@router.get("")
async def list_archived(
    who: Principal = Reader,
    s: Services = Depends(services_of),
    limit: int = Query(50, ge=1, le=500),
    before: Instant = Query(
        None,
        description="cursor: the `next_before` of the previous page (an ISO-8601 time)",
        json_schema_extra={"format": "date-time"},
    ),
) -> dict[str, Any]:
    """The workspace's archived executions, last archived first."""
    cursor = utc_param(before, "before")  # parsed here: a time PostgreSQL cannot take is a 422
    rows = [_row(r) for r in await s.reader.archived(who.workspace_id, limit, cursor)]
    following = rows[-1]["archived_at"] if len(rows) == limit else None
    return {"items": rows, "next_before": following}


@router.get("/{execution_id}")
async def show_archived(
    execution_id: UUID,
    who: Principal = Reader,
    s: Services = Depends(services_of),
    lines: bool = Query(False, description="also every line of the archived history"),
) -> dict[str, Any]:
    """Where an execution's history was archived, its manifest (and, asked, its lines)."""
    record = await _record(s, who, execution_id)
    archives = _archives(s)
    try:
        manifest = await run_sync(archives.manifest, record)
        found = await run_sync(archives.lines, record) if lines else None
    except ArchiveError as exc:
        raise HTTPException(503, str(exc)) from None
    answer = _row(record) | {"where": archives.store.where, "manifest": manifest}
    return answer | ({"lines": found} if found is not None else {})


@router.post("/{execution_id}/restore")
async def restore_archived(
    execution_id: UUID, who: Principal = Manager, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """Bring an archived history back into the views (for debugging; nothing runs again)."""
    record = await _record(s, who, execution_id)
    if record.get("folded_at") is not None:
        raise HTTPException(
            409,
            f"execution {execution_id} is past the summary period (BATON_SUMMARY_RETENTION_DAYS)"
            ": it is counted by day and not restored; read it with `baton archive show --lines`",
        )
    try:
        restored: dict[str, Any] = await run_sync(_archives(s).restore, execution_id)
    except SummaryFolded as exc:
        raise HTTPException(409, str(exc)) from None
    except ArchiveError as exc:
        raise HTTPException(503, str(exc)) from None
    return restored


@router.post("/run")
async def sweep_now(
    who: Principal = Depends(allowed("own", "sweeping the archive")),
    s: Services = Depends(services_of),
) -> dict[str, Any]:
    """Archive and remove every expired execution of the installation now."""
    if who.workspace_id != DEFAULT_WORKSPACE:
        raise Forbidden("sweeping the archive needs the role owner of the default workspace")
    done = await run_sync(_archives(s).sweep)
    return {
        "archived": done.archived,
        "skipped": done.skipped,
        "failed": done.failed,
        "folded": done.folded,
        "audit": done.audit,
    }


async def _record(s: Services, who: Principal, execution_id: UUID) -> dict[str, Any]:
    """Its archive record; past the summary period (the record folded), what the workspace's
    day index in the archive holds of it (slower: the index is read newest day first)."""
    rows = await s.reader.archived(who.workspace_id, 1, None, execution_id)
    if rows:
        return rows[0]
    found = None
    if s.archives is not None:
        try:
            found = await run_sync(s.archives.folded, who.workspace_id, execution_id)
        except (ArchiveError, OSError) as exc:
            raise HTTPException(503, f"the archive's index could not be read: {exc}") from None
    if found is None:
        raise NotFound(f"no archived execution {execution_id}")
    return found
