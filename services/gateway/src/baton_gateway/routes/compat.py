"""The seed engine's routes, as thin aliases over /v1, so its existing clients keep working.

``POST /api/orchestrate {query, userId}`` starts an execution from words (``userId`` becomes the
input ``user_id``); ``GET /api/orchestrate/stream/{id}`` streams its events as SSE events named
``progress``; get / pause / resume / cancel map to the same /v1 operations (same keys, roles and
workspaces)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sse_starlette.sse import EventSourceResponse

from baton_gateway.domain import Principal
from baton_gateway.offload import off_loop
from baton_gateway.routes import executions as ex
from baton_gateway.routes.deps import Reader, Runner, policy_of, services_of
from baton_gateway.services import Services

router = APIRouter(prefix="/api/orchestrate", tags=["seed compatibility"])


class Orchestrate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    query: str = Field(min_length=1, max_length=20_000, pattern=r"\S")

    @field_validator("query")
    @classmethod
    def _words(cls, value: str) -> str:
        if not value.strip():  # str.strip's whitespace is wider than the pattern's
            raise ValueError("the request in words, not only spaces")
        return value

    userId: str | None = Field(None, max_length=200)


@router.post("", status_code=202)
async def orchestrate(
    body: Orchestrate, who: Principal = Runner, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """= ``POST /v1/executions {request: query, inputs: {user_id}}``."""
    inputs = {"user_id": body.userId} if body.userId else {}
    create = ex.ExecutionCreate(request=body.query, inputs=inputs)
    policy = await policy_of(s, who.workspace_id)
    data = await off_loop(ex.prepared, create, None, policy, who)
    execution_id, _ = await s.intake.submit_async(who.workspace_id, data)
    return {"id": str(execution_id), "executionId": str(execution_id), "status": "requested"}


@router.get("/{execution_id}")
async def get(
    execution_id: UUID, who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """= ``GET /v1/executions/{id}``."""
    return await ex.view_of(s, execution_id, who)


@router.get("/stream/{execution_id}")
async def stream(
    execution_id: UUID,
    request: Request,
    who: Principal = Reader,
    s: Services = Depends(services_of),
    last_event_id: str | None = Header(None),
) -> EventSourceResponse:
    """= ``GET /v1/executions/{id}/stream``, every event named ``progress``."""
    source = await ex.events_stream(s, execution_id, who, request, last_event_id)
    return EventSourceResponse(_progress(source), ping=10)


async def _progress(source: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    async for item in source:
        data = json.loads(item["data"])
        data.setdefault("type", item.get("event"))
        yield {**item, "event": "progress", "data": json.dumps(data)}


def _alias(name: str) -> None:
    async def command(
        execution_id: UUID,
        body: ex.Command | None = None,
        who: Principal = Runner,
        s: Services = Depends(services_of),
    ) -> JSONResponse:
        return await ex.steer(s, execution_id, name, body, who)

    command.__doc__ = f"= ``POST /v1/executions/{{id}}/{name}``."
    router.add_api_route(
        f"/{{execution_id}}/{name}", command, methods=["POST"], status_code=202, name=f"seed_{name}"
    )


for _name in ("pause", "resume", "cancel"):
    _alias(_name)
