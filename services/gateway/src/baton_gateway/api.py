"""HTTP API: submit and steer executions, read their views, follow them live (SSE)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from baton_common.catalogue import DEFAULT_CATALOGUE, ToolList
from baton_common.plans import PlanInvalid, parse_plan_text, validate_plan
from baton_common.store import run_sync
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sse_starlette.sse import EventSourceResponse

from baton_gateway.application import IntakeApp
from baton_gateway.domain import GatewayError, NotFound
from baton_gateway.reads import ViewReader

TERMINAL_EVENTS = {"execution.succeeded", "execution.failed", "execution.cancelled", "plan.failed"}
TERMINAL = {"succeeded", "failed", "cancelled"}


class ExecutionCreate(BaseModel):
    """``POST /v1/executions``: a request in words, or a plan (object, or JSON/YAML text)."""

    model_config = ConfigDict(extra="forbid")
    request: str | None = Field(
        None,
        max_length=20_000,
        examples=[
            "collect incident reports for api, billing and search, summarise them and save the summary to summary.md"
        ],
    )
    plan: dict[str, Any] | str | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _one_of(self) -> ExecutionCreate:
        if (self.request is None or not self.request.strip()) == (self.plan is None):
            raise ValueError("give exactly one of 'request' (words) or 'plan'")
        return self


class ExecutionBatch(BaseModel):
    """``POST /v1/executions/batch``: many submissions, recorded in one commit."""

    model_config = ConfigDict(extra="forbid")
    items: list[ExecutionCreate] = Field(min_length=1, max_length=1000)


class ExecutionAccepted(BaseModel):
    id: UUID
    status: str
    created: bool
    links: dict[str, str]


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=2000)


class PlanDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request: str = Field(min_length=1, max_length=20_000)
    inputs: dict[str, Any] = Field(default_factory=dict)


@dataclass
class Services:
    """What the routes need; built by main.py, replaced in tests."""

    intake: IntakeApp
    reader: ViewReader
    token: str | None = None
    planner: Any = None
    ready: Any = None
    metrics: Any = None


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Baton",
        version="0.1.0",
        description="Plan, run and watch durable AI workflows. Every change is an event.",
    )
    app.state.services = services
    _errors(app)
    _routes(app)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
            return JSONResponse(
                {"detail": f"malformed JSON: {ctx.get('error', 'cannot parse the body')}"}, 400
            )
        problems = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                "message": e["msg"],
            }
            for e in errors
        ]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse({"detail": f"invalid request: {detail}", "problems": problems}, 422)

    @app.exception_handler(PlanInvalid)
    async def plan_invalid(_request: Request, exc: PlanInvalid) -> JSONResponse:
        problems = [p.model_dump() for p in exc.problems]
        return JSONResponse({"detail": f"plan invalid: {exc}", "problems": problems}, 422)

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, exc.status)


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    if services.token:
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given, f"Bearer {services.token}"):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer …)")
    return services


def workspace(
    x_baton_workspace: str = Header("default", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$"),
) -> str:
    return x_baton_workspace


def _routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz(request: Request) -> JSONResponse:
        services: Services = request.app.state.services
        ok = await services.reader.ready() and (services.ready() if services.ready else True)
        return JSONResponse({"status": "ready" if ok else "not ready"}, 200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics(request: Request) -> str:
        services: Services = request.app.state.services
        extra = services.metrics() if services.metrics else ""
        return f"baton_intake_commits_total {services.intake.commits}\n{extra}"

    @app.post(
        "/v1/executions", status_code=202, response_model=ExecutionAccepted, tags=["executions"]
    )
    async def create(
        body: ExecutionCreate,
        request: Request,
        ws: str = Depends(workspace),
        idempotency_key: str | None = Header(None),
        s: Services = Depends(services_of),
    ) -> JSONResponse:
        data = _prepared(body, idempotency_key)
        execution_id, created = await run_sync(s.intake.submit, ws, data)
        accepted = ExecutionAccepted(
            id=execution_id,
            status="requested" if created else "existing",
            created=created,
            links=_links(execution_id),
        )
        return JSONResponse(accepted.model_dump(mode="json"), 202 if created else 200)

    @app.post("/v1/executions/batch", status_code=202, tags=["executions"])
    async def create_many(
        body: ExecutionBatch,
        ws: str = Depends(workspace),
        s: Services = Depends(services_of),
    ) -> dict[str, Any]:
        """Submit up to 1,000 executions in one call and one commit (all validated first)."""
        prepared = []
        for i, item in enumerate(body.items):
            try:
                prepared.append(_prepared(item, None))
            except PlanInvalid as exc:
                problems = [
                    p.model_copy(update={"field": f"items.{i}.{p.field}"}) for p in exc.problems
                ]
                raise PlanInvalid(problems) from None
        results = await run_sync(s.intake.submit_many, ws, prepared)
        return {"items": [{"id": str(i), "created": c, "links": _links(i)} for i, c in results]}

    @app.get("/v1/executions", tags=["executions"])
    async def list_executions(
        ws: str = Depends(workspace),
        s: Services = Depends(services_of),
        status: Literal[
            "requested",
            "planned",
            "running",
            "paused",
            "cancelling",
            "compensating",
            "succeeded",
            "failed",
            "cancelled",
        ]
        | None = None,
        limit: int = Query(50, ge=1, le=500),
        before: str | None = Query(None, description="cursor: created_at of the last item"),
    ) -> dict[str, Any]:
        rows = await s.reader.listing(ws, status, limit, before)
        items = [
            {
                **r,
                "id": str(r["id"]),
                "created_at": r["created_at"].isoformat(),
                "updated_at": r["updated_at"].isoformat(),
            }
            for r in rows
        ]
        cursor = items[-1]["created_at"] if len(items) == limit else None
        return {"items": items, "next_before": cursor}

    @app.get("/v1/executions/{execution_id}", tags=["executions"])
    async def get_execution(
        execution_id: UUID, s: Services = Depends(services_of)
    ) -> dict[str, Any]:
        return await _view(s, execution_id)

    @app.get("/v1/executions/{execution_id}/events", tags=["executions"])
    async def history(
        execution_id: UUID,
        s: Services = Depends(services_of),
        after: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> dict[str, Any]:
        await _view(s, execution_id)
        rows = await s.reader.events(execution_id, after, limit)
        return {"items": [_event_row(r) for r in rows]}

    @app.get("/v1/executions/{execution_id}/stream", tags=["executions"])
    async def stream(
        execution_id: UUID,
        request: Request,
        s: Services = Depends(services_of),
        last_event_id: str | None = Header(None),
    ) -> EventSourceResponse:
        await _view(s, execution_id)
        after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
        return EventSourceResponse(_follow(s, execution_id, after, request), ping=10)

    for name in ("pause", "resume", "cancel"):
        _command_route(app, name)

    @app.post("/v1/plans/validate", tags=["plans"])
    async def validate(body: dict[str, Any]) -> dict[str, Any]:
        raw = body.get("plan", body)
        raw = parse_plan_text(raw) if isinstance(raw, str) else raw
        plan = validate_plan(raw, DEFAULT_CATALOGUE, body.get("inputs") if "plan" in body else None)
        return {
            "valid": True,
            "order": plan.order(),
            "plan": plan.model_dump(mode="json", exclude_defaults=True),
        }

    @app.post("/v1/plans/draft", tags=["plans"])
    async def draft(body: PlanDraft, s: Services = Depends(services_of)) -> dict[str, Any]:
        from baton_planner.planners import PlanningError

        try:
            data = await s.planner.plan(body.request, body.inputs)
        except PlanningError as exc:
            raise HTTPException(422, f"planning failed: {exc}") from None
        plan = validate_plan(data, DEFAULT_CATALOGUE, body.inputs)
        return {
            "planner": s.planner.name,
            "order": plan.order(),
            "plan": plan.model_dump(mode="json", exclude_defaults=True),
        }

    @app.get("/v1/tools", response_model=ToolList, tags=["tools"])
    async def tools() -> ToolList:
        return ToolList(tools=DEFAULT_CATALOGUE.all())


def _command_route(app: FastAPI, name: str) -> None:
    async def command(
        execution_id: UUID, body: Command | None = None, s: Services = Depends(services_of)
    ) -> JSONResponse:
        view = await _view(s, execution_id)
        if view["status"] in TERMINAL:
            raise HTTPException(
                409, f"execution {execution_id} already {view['status']}: nothing to {name}"
            )
        if (
            name == "resume"
            and not view.get("paused")
            and view["status"] not in ("requested", "planned")
        ):
            raise HTTPException(409, f"execution {execution_id} is not paused")
        await run_sync(s.intake.command, execution_id, name, body.reason if body else None)
        return JSONResponse({"id": str(execution_id), "accepted": name}, 202)

    app.add_api_route(
        f"/v1/executions/{{execution_id}}/{name}",
        command,
        methods=["POST"],
        status_code=202,
        tags=["executions"],
        name=name,
    )


def _prepared(body: ExecutionCreate, header_key: str | None) -> dict[str, Any]:
    """The request as recorded: a plan is parsed and validated first (nothing stored if bad)."""
    data = body.model_dump()
    data["idempotency_key"] = body.idempotency_key or header_key
    if body.plan is not None:
        raw = parse_plan_text(body.plan) if isinstance(body.plan, str) else body.plan
        plan = validate_plan(raw, DEFAULT_CATALOGUE, body.inputs)
        data["plan"] = plan.model_dump(mode="json", exclude_defaults=True)
    return data


async def _view(s: Services, execution_id: UUID) -> dict[str, Any]:
    view = await s.reader.get(execution_id)
    if view is not None:
        return view
    # Accepted but not yet projected: answer from the intake record, never a false 404.
    intake = await run_sync(s.intake.load, execution_id)
    if intake is None or intake.request is None:
        raise NotFound(f"no execution {execution_id}")
    r = intake.request
    return {
        "id": str(execution_id),
        "workspace_id": r.workspace_id,
        "status": "requested",
        "request": r.request,
        "inputs": r.inputs,
        "plan": r.plan,
        "steps": {},
        "created_at": r.occurred_at.isoformat(),
        "paused": False,
    }


def _event_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "event_id": str(row["event_id"]),
        "type": row["type"],
        "occurred_at": row["occurred_at"].isoformat(),
        "data": row["data"],
    }


async def _follow(
    s: Services, execution_id: UUID, after: int, request: Request
) -> AsyncIterator[dict[str, Any]]:
    """History after ``after``, then live events, until the execution ends or the client goes."""
    while not await request.is_disconnected():
        rows = await s.reader.events(execution_id, after, 500)
        for row in rows:
            after = row["seq"]
            yield {"id": str(row["seq"]), "event": row["type"], "data": json.dumps(_event_row(row))}
            if row["type"] in TERMINAL_EVENTS:
                view = await s.reader.get(execution_id)
                yield {"event": "end", "data": json.dumps({"status": (view or {}).get("status")})}
                return
        if not rows:
            await asyncio.sleep(0.1)


def _links(execution_id: UUID) -> dict[str, str]:
    base = f"/v1/executions/{execution_id}"
    return {"self": base, "events": f"{base}/events", "stream": f"{base}/stream"}
