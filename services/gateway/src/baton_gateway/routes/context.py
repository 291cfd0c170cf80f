"""An execution's shared context, the workspace's (read, write and delete keys) and the smart
cache (clear it).

A write is recorded as a command (``execution.context_put_requested``) that the executor turns
into ``execution.context_written`` with its version; reads come from the execution's view, which
the projector folds from those events (so they follow the write within moments, 202 says so).
The workspace's context is the same, with ``context.put_requested`` as the command, the
executor's ``context.written`` / ``context.deleted`` and the projector's ``workspace_context``.
A viewer reads it; writing and deleting need the ``run`` permission (operator, admin, owner),
as starting an execution (whose steps may write it) does.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.limits import check_size, limits
from baton_common.store import run_sync
from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from baton_gateway.domain import NotFound, Principal
from baton_gateway.routes.deps import Reader, Runner, services_of
from baton_gateway.routes.executions import TERMINAL, view_of
from baton_gateway.services import Services

router = APIRouter(tags=["agents"])
Key = Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")


class ContextPut(BaseModel):
    """``PUT /v1/executions/{id}/context/{key}``: the new value (any JSON, ≤ BATON_MAX_CONTEXT_VALUE_BYTES, 64 KiB)."""

    model_config = ConfigDict(extra="forbid")
    value: Any = Field(..., examples=[{"budget": 1200}])


class CacheClear(BaseModel):
    """``POST /v1/cache/clear``: forget cached results of one tool, or of every tool."""

    model_config = ConfigDict(extra="forbid")
    tool: str | None = Field(None, max_length=200, examples=["text.template"])


@router.get("/v1/executions/{execution_id}/context")
async def read_all(
    execution_id: UUID, who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    view = await view_of(s, execution_id, who)
    return {"items": view.get("context") or {}}


@router.get("/v1/executions/{execution_id}/context/{key}")
async def read(
    execution_id: UUID,
    key: str = Key,
    who: Principal = Reader,
    s: Services = Depends(services_of),
) -> dict[str, Any]:
    view = await view_of(s, execution_id, who)
    entry = (view.get("context") or {}).get(key)
    if entry is None:
        raise NotFound(f"execution {execution_id} has no context key {key!r}")
    return {"key": key, **entry}


@router.put("/v1/executions/{execution_id}/context/{key}", status_code=202)
async def write(
    execution_id: UUID,
    body: ContextPut,
    key: str = Key,
    who: Principal = Runner,
    s: Services = Depends(services_of),
) -> JSONResponse:
    view = await view_of(s, execution_id, who)
    if view["status"] in TERMINAL:
        raise HTTPException(409, f"execution {execution_id} already {view['status']}")
    if view["status"] in ("requested", "planned"):  # the executor holds no context for it yet
        raise HTTPException(
            409, f"execution {execution_id} has not started yet: write once it runs"
        )
    # the executor's limit too (baton_executor.context), checked here before anything is stored
    check_size("value", body.value, limits().context_value)
    await run_sync(
        lambda: s.intake.record(
            execution_id, c.ContextPutRequested, who.actor, key=key, value=body.value
        )
    )
    return JSONResponse({"id": str(execution_id), "key": key, "accepted": "write"}, 202)


@router.get("/v1/context")
async def read_workspace_all(
    who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """The workspace's shared context: every key, with its value, version and writer."""
    rows = await s.reader.workspace_context(who.workspace_id)
    return {"items": {row.pop("key"): _entry(row) for row in rows}}


@router.get("/v1/context/{key}")
async def read_workspace(
    key: str = Key, who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """One key of the workspace's shared context (404 when it has no value)."""
    rows = await s.reader.workspace_context(who.workspace_id, key)
    if not rows:
        raise NotFound(f"the workspace's context has no key {key!r}")
    return {"key": key, **_entry(rows[0])}


@router.put("/v1/context/{key}", status_code=202)
async def write_workspace(
    body: ContextPut, key: str = Key, who: Principal = Runner, s: Services = Depends(services_of)
) -> JSONResponse:
    """Write a key of the workspace's shared context: every execution of it reads the value."""
    check_size("value", body.value, limits().context_value)  # the executor's limit too
    await _put_workspace(s, who, key, value=body.value)
    return JSONResponse({"key": key, "scope": "workspace", "accepted": "write"}, 202)


@router.delete("/v1/context/{key}", status_code=202)
async def delete_workspace(
    key: str = Key, who: Principal = Runner, s: Services = Depends(services_of)
) -> JSONResponse:
    """Delete a key of the workspace's shared context (404 when it has no value)."""
    if not await s.reader.workspace_context(who.workspace_id, key):
        raise NotFound(f"the workspace's context has no key {key!r}")
    await _put_workspace(s, who, key, delete=True)
    return JSONResponse({"key": key, "scope": "workspace", "accepted": "delete"}, 202)


async def _put_workspace(s: Services, who: Principal, key: str, **change: Any) -> None:
    event = c.WorkspaceContextPutRequested(
        aggregate_id=uuid4(),
        aggregate_version=1,
        workspace_id=who.workspace_id,
        actor=who.actor,
        key=key,
        **change,
    )
    await run_sync(s.intake.append, event)


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    at, execution = row.pop("at"), row.pop("execution_id")
    return {**row, "execution_id": str(execution) if execution else None, "at": at.isoformat()}


@router.post("/v1/cache/clear", status_code=202)
async def clear_cache(
    body: CacheClear, who: Principal = Runner, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """Forget the workspace's cached results of read-only tools (``tool``: only that one's)."""
    if body.tool is not None and body.tool not in DEFAULT_CATALOGUE:
        raise HTTPException(422, f"tool: unknown tool {body.tool!r}")
    event = c.CacheClearRequested(
        aggregate_id=uuid4(),
        aggregate_version=1,
        workspace_id=who.workspace_id,
        actor=who.actor,
        tool=body.tool,
    )
    await run_sync(s.intake.append, event)
    return {"accepted": "clear", "tool": body.tool}
