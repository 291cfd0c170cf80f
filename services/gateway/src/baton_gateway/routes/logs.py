"""An execution's live step logs: the lines its tools wrote, as a page or followed live (SSE)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request
from psycopg.sql import SQL
from sse_starlette.sse import EventSourceResponse

from baton_gateway.domain import Principal
from baton_gateway.routes.deps import Reader, services_of, still_allowed
from baton_gateway.routes.executions import TERMINAL, view_of
from baton_gateway.services import Services

router = APIRouter(prefix="/v1/executions", tags=["executions"])

POLL_S = 0.2


@router.get("/{execution_id}/logs", response_model=None)
async def logs(
    execution_id: UUID,
    request: Request,
    who: Principal = Reader,
    s: Services = Depends(services_of),
    after: int = Query(0, ge=0, description="only lines after this one (a line's `seq`)"),
    step: str | None = Query(None, max_length=200, description="only this step's lines"),
    limit: int = Query(1000, ge=1, le=10_000),
    follow: bool = Query(False, description="stream (SSE) the lines as they come, to the end"),
    accept: str | None = Header(None),
    last_event_id: str | None = Header(None),
) -> dict[str, Any] | EventSourceResponse:
    """The lines the execution's steps wrote, oldest first, each with its step, attempt, level
    and time. A line the step's limits cut says ``cut``; a ``marker`` line says how many lines
    were dropped. With ``follow=true`` (or ``Accept: text/event-stream``) this is an SSE stream
    of ``line`` events that ends with ``end`` once the execution has finished and every line is
    sent; ``Last-Event-ID`` (or ``after``) resumes after a line."""
    await view_of(s, execution_id, who)
    if follow or "text/event-stream" in (accept or ""):
        if last_event_id and last_event_id.isdigit():
            after = int(last_event_id)
        return EventSourceResponse(_follow(s, execution_id, after, step, request), ping=10)
    rows = await read_lines(s, execution_id, after, limit, step)
    items = [line(r) for r in rows]
    return {"items": items, "next_after": items[-1]["seq"] if len(items) == limit else None}


async def read_lines(
    s: Services, execution_id: UUID, after: int, limit: int, step: str | None = None
) -> list[dict[str, Any]]:
    where = "execution_id = %s AND seq > %s" + (" AND step_id = %s" if step else "")
    params: tuple[Any, ...] = (execution_id, after, *((step,) if step else ()), limit)
    async with s.reader.pool.connection() as conn:
        cur = await conn.execute(
            SQL(
                "SELECT seq, step_id, attempt, kind, tool, at, level, message, cut, marker"
                f" FROM {{s}}.step_logs WHERE {where} ORDER BY seq LIMIT %s"
            ).format(s=s.reader.s),
            params,
        )
        return cast(list[dict[str, Any]], await cur.fetchall())


def line(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": row["at"].isoformat()}


async def _follow(
    s: Services, execution_id: UUID, after: int, step: str | None, request: Request
) -> AsyncIterator[dict[str, Any]]:
    """Lines after ``after`` as they are projected; ``end`` after the last one of a finished
    execution (its lines are on the stream before its outcome, so one more read finds them)."""
    finished = False
    while await still_allowed(request):
        rows = await read_lines(s, execution_id, after, 500, step)
        for row in rows:
            after = row["seq"]
            yield {"id": str(after), "event": "line", "data": json.dumps(line(row))}
        if len(rows) == 500:
            continue
        if finished:
            view = await s.reader.get(execution_id)
            yield {"event": "end", "data": json.dumps({"status": (view or {}).get("status")})}
            return
        view = await s.reader.get(execution_id)
        finished = (view or {}).get("status") in TERMINAL
        if not finished:
            await asyncio.sleep(POLL_S)
