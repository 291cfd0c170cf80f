"""The workspace's live event stream (the dashboard's list follows it) and its metrics."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette.sse import EventSourceResponse

from baton_gateway.business import business
from baton_gateway.domain import Principal
from baton_gateway.engine_figures import EngineFigures, MetricsSummary, engine_figures
from baton_gateway.routes.deps import Reader, services_of, still_allowed
from baton_gateway.services import Services

router = APIRouter(tags=["live"])
log = logging.getLogger(__name__)


@router.get("/v1/stream")
async def workspace_stream(
    request: Request,
    who: Principal = Reader,
    s: Services = Depends(services_of),
    last_event_id: str | None = Header(None),
    after: int | None = Query(None, ge=0, description="start after this event (an `id`)"),
) -> EventSourceResponse:
    """Every execution event of the workspace as it happens. ``Last-Event-ID`` (or ``after``)
    resumes after an event's ``id``; without either, only what happens from now on."""
    if last_event_id and last_event_id.isdigit():
        after = int(last_event_id)
    elif after is None:
        after = await s.reader.last_seq()
    return EventSourceResponse(_follow(s, who.workspace_id, after, request), ping=10)


async def _follow(
    s: Services, workspace_id: str, after: int, request: Request
) -> AsyncIterator[dict[str, Any]]:
    async for row in workspace_rows(s, workspace_id, after, lambda: still_allowed(request)):
        data = {
            "seq": row["seq"],
            "execution_id": str(row["execution_id"]),
            "type": row["type"],
            "status": row["status"],
            "occurred_at": row["occurred_at"].isoformat(),
        }
        yield {"id": str(row["seq"]), "event": row["type"], "data": json.dumps(data)}


async def workspace_rows(
    s: Services, workspace_id: str, after: int, going: Callable[[], Awaitable[bool]]
) -> AsyncIterator[dict[str, Any]]:
    """The workspace's execution events after ``after`` as they are projected, while
    ``going()`` says so (the stream's client, the MCP server's watchers)."""
    while await going():
        rows = await s.reader.workspace_events(workspace_id, after)
        for row in rows:
            after = row["seq"]
            yield row
        if not rows:
            await asyncio.sleep(0.25)


@router.get("/v1/metrics/summary", response_model=MetricsSummary)
async def summary(
    who: Principal = Reader,
    s: Services = Depends(services_of),
    hours: float = Query(24, gt=0, le=24 * 90),
) -> dict[str, Any]:
    """Throughput per minute, success rate, and p50/p95 duration per plan and per tool, from the
    projections (executions created in the last ``hours``); ``totals``: the workspace's business
    metrics since the start (executions per plan and outcome, approval time to decision, tool
    success rate, LLM calls, tokens and cost by model, schedule firings); ``engine`` (for a
    caller who may manage the workspace, else null): the installation's events per second over
    the last minute, each durable consumer's lag, unacknowledged and redelivered messages and
    oldest pending age, and the dead letters, read from JetStream now."""
    now = datetime.now(UTC)
    since = now - timedelta(hours=hours)
    plans = await s.reader.plan_summary(who.workspace_id, since)
    tools = await s.reader.tool_summary(who.workspace_id, since)
    minutes = await s.reader.throughput(who.workspace_id, since)
    finished = sum(int(p["executions"]) for p in plans)
    succeeded = sum(int(p["succeeded"]) for p in plans)
    return {
        "since": since.isoformat(),
        "finished": finished,
        "success_rate": succeeded / finished if finished else None,
        "throughput": [
            {
                "minute": m["minute"].isoformat(),
                "finished": m["finished"],
                "succeeded": m["succeeded"],
            }
            for m in minutes
            if m["minute"] is not None
        ],
        "by_plan": [_numbers(p) for p in plans],
        "by_tool": [_numbers(t) for t in tools],
        "totals": await business(s, who.workspace_id),
        "engine": await _engine(s, who, now),
    }


async def _engine(s: Services, who: Principal, now: datetime) -> EngineFigures | None:
    """The engine's figures for those who may manage; None when the bus cannot answer."""
    if not who.can("manage"):
        return None
    try:
        return await engine_figures(s.bus, who.workspace_id, now)
    except Exception as exc:  # the business figures still answer
        log.warning("engine figures unavailable: %s", exc)
        return None


def _numbers(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in row.items()}
