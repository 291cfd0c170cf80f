"""Executions: submit, list, read, follow live (SSE), pause / resume / cancel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from baton_common.archive import ArchiveError
from baton_common.contracts import decode
from baton_common.contracts.plans import MAX_VERSION, PLAN_NAME
from baton_common.limits import check_size, limits
from baton_common.plans import PlanInvalid, read_plan
from baton_common.sealing import redact
from baton_common.store import run_sync
from baton_common.telemetry import exporting
from baton_common.views import fold
from baton_common.workspaces import WorkspacePolicy, policy_problems
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from sse_starlette.sse import EventSourceResponse

from baton_gateway.domain import NotFound, Principal
from baton_gateway.offload import checked, off_loop
from baton_gateway.openapi import OptionalPlanField, exactly_one_of
from baton_gateway.reads import ListFilters
from baton_gateway.routes.deps import (
    Reader,
    Runner,
    bearer,
    policy_of,
    services_of,
    still_allowed,
)
from baton_gateway.routes.saved import saved_plans_exist
from baton_gateway.services import Services
from baton_gateway.simulation import SimulationFields, simulation_request
from baton_gateway.vetting import sealed, vetted

router = APIRouter(prefix="/v1/executions", tags=["executions"])

TERMINAL_EVENTS = {"execution.succeeded", "execution.failed", "execution.cancelled", "plan.failed"}
TERMINAL = {"succeeded", "failed", "cancelled"}
Status = Literal[
    "requested",
    "planned",
    "waiting",
    "running",
    "paused",
    "cancelling",
    "compensating",
    "succeeded",
    "failed",
    "cancelled",
]


class PlanRef(BaseModel):
    """A saved plan by name; without ``version``: the current one (or the A/B split's pick)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=PLAN_NAME)
    version: int | None = Field(None, ge=1, le=MAX_VERSION)


class ExecutionCreate(SimulationFields):
    """``POST /v1/executions``: a request in words, a plan (object, or JSON/YAML text), or a
    saved plan by name (``plan_ref``)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of("request", "plan", "plan_ref")
    )
    request: str | None = Field(
        None,
        max_length=20_000,
        examples=[
            "collect incident reports for api, billing and search, summarise them and save the summary to summary.md"
        ],
    )
    plan: Annotated[dict[str, Any] | str | None, OptionalPlanField] = None
    plan_ref: PlanRef | None = None
    inputs: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)
    review_plan: bool = Field(
        False,
        description="hold the plan (given, or drafted from the request) for a person's review",
    )

    @model_validator(mode="after")
    def _one_of(self) -> ExecutionCreate:
        given = [self.request is not None and bool(self.request.strip())]
        given += [self.plan is not None, self.plan_ref is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of 'request' (words), 'plan' or 'plan_ref'")
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


class _SubmitRoute(APIRoute):
    """``POST /v1/executions`` on a shorter path (issue 32): a request that passes every check
    goes from its body straight to ``submitted``, without FastAPI's per-request dependency
    solving (a third of the route's time); any other request takes FastAPI's own path, which
    answers it exactly as before. The OpenAPI document is the route's, unchanged."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        standard = super().get_route_handler()

        async def handler(request: Request) -> Response:
            response = await _submit_directly(request)
            return response if response is not None else await standard(request)

        return handler


async def _submit_directly(request: Request) -> Response | None:
    """The route's work for a JSON body that parses and validates; None: let FastAPI answer
    (a malformed or invalid body, another content type, dependency overrides in tests, and
    whenever spans are exported: FastAPI's endpoint span stays in the trace). The
    checks run in FastAPI's order: the body is read and parsed, the caller authenticated (its
    refusal raised as FastAPI would raise it), then the body validated."""
    if exporting() or request.app.dependency_overrides:  # FastAPI's spans; tests' overrides
        return None
    if request.headers.get("content-type") != JSON:
        return None
    try:
        raw = await request.json()  # remembered by the request: FastAPI's path reads it again
    except Exception:  # malformed, too deep, the client gone: FastAPI's path says which
        return None
    who = await _RUN_CHECK(request, await bearer(request))
    try:
        body = ExecutionCreate.model_validate(raw)
    except ValidationError:
        return None
    key = request.headers.get("idempotency-key")
    s = await services_of(request)
    return await submitted(s, who, body, key, _checkable_size(request, body))


JSON = "application/json"
_RUN_CHECK = Runner.dependency
assert _RUN_CHECK is not None


async def create(
    request: Request,
    body: ExecutionCreate,
    idempotency_key: str | None = Header(None),
    who: Principal = Runner,
    s: Services = Depends(services_of),
) -> JSONResponse:
    return await submitted(s, who, body, idempotency_key, _checkable_size(request, body))


router.add_api_route(
    "",
    create,
    methods=["POST"],
    status_code=202,
    response_model=ExecutionAccepted,
    route_class_override=_SubmitRoute,
)


async def submitted(
    s: Services, who: Principal, body: ExecutionCreate, header_key: str | None, size: int | None
) -> JSONResponse:
    """The submission checked, vetted, sealed and recorded: 202 (or 200 for a repeated key)."""
    secret_inputs = await saved_plans_exist(s, who, [body])
    policy = await policy_of(s, who.workspace_id)
    if body.replay_of is not None:  # only an execution the caller may read is replayed
        await view_of(s, body.replay_of, who)
    data = await checked(size, prepared, body, header_key, policy, who)
    hidden = _secret_inputs_of(body, secret_inputs)
    data = await sealed(await vetted(data, policy, who.workspace_id), s.sealer, hidden)
    execution_id, created = await s.intake.submit_async(who.workspace_id, data)
    accepted = {
        "id": str(execution_id),
        "status": "requested" if created else "existing",
        "created": created,
        "links": _links(execution_id),
    }  # ``ExecutionAccepted``, written out: a model built only to be dumped costs a validation
    return JSONResponse(accepted, 202 if created else 200)


def _checkable_size(request: Request, body: ExecutionCreate) -> int | None:
    """The body's size, when its checks may run on the event loop if it is small: not for a
    document given as text (YAML parses slowly), nor a body of unknown length (chunked)."""
    if isinstance(body.plan, str) or isinstance(body.mock_profile, str):
        return None
    length = request.headers.get("content-length")
    return int(length) if length and length.isdigit() else None


@router.post("/batch", status_code=202)
async def create_many(
    body: ExecutionBatch, who: Principal = Runner, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """Submit up to 1,000 executions in one call and one commit (all validated first)."""
    secret_inputs = await saved_plans_exist(s, who, body.items)
    policy = await policy_of(s, who.workspace_id)
    items = []
    for i, item in enumerate(body.items):
        try:
            data = await off_loop(prepared, item, None, policy, who)
            hidden = _secret_inputs_of(item, secret_inputs)
            items.append(
                await sealed(await vetted(data, policy, who.workspace_id), s.sealer, hidden)
            )
        except PlanInvalid as exc:
            problems = [
                p.model_copy(update={"field": f"items.{i}.{p.field}"}) for p in exc.problems
            ]
            raise PlanInvalid(problems) from None
    results = await run_sync(s.intake.submit_many, who.workspace_id, items)
    return {"items": [{"id": str(i), "created": c, "links": _links(i)} for i, c in results]}


def _secret_inputs_of(
    body: ExecutionCreate, found: dict[tuple[str, int | None], list[str]]
) -> list[str]:
    """The inputs a run of a saved plan sends to secret tool fields (none for other runs)."""
    ref = body.plan_ref
    return found.get((ref.name, ref.version), []) if ref is not None else []


_INSTANT = TypeAdapter(datetime)
Instant = str | None  # published as a date-time (the Query's schema), parsed by ``utc_param``


def utc_param(text: str | None, name: str) -> datetime | None:
    """An ISO-8601 time in UTC; empty (a client's empty cursor) is none. Parsed here, not by
    PostgreSQL, which takes offsets up to ±15:59 only: a time that is none, or that UTC cannot
    hold (year 1 at +01:00), is a 422, never a failed query."""
    if not text:
        return None
    try:
        value = _INSTANT.validate_python(text)
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    except ValidationError as exc:
        raise HTTPException(422, f"{name}: {exc.errors()[0]['msg']}") from None
    except OverflowError:
        raise HTTPException(422, f"{name}: {text} is out of range") from None


def _text(value: str | None, name: str) -> str | None:
    if value and "\x00" in value:  # PostgreSQL text cannot hold it
        raise HTTPException(422, f"{name}: contains a NUL character")
    return value or None


@router.get("")
async def list_executions(
    who: Principal = Reader,
    s: Services = Depends(services_of),
    status: Status | None = None,
    limit: int = Query(50, ge=1, le=500),
    before: Instant = Query(
        None,
        description="cursor: the `next_before` of the previous page (an ISO-8601 time)",
        json_schema_extra={"format": "date-time"},
    ),
    plan: str | None = Query(None, max_length=200, description="the plan's name"),
    q: str | None = Query(None, max_length=200, description="words in the request"),
    since: Instant = Query(
        None,
        description="created at or after (ISO-8601)",
        json_schema_extra={"format": "date-time"},
    ),
    until: Instant = Query(
        None, description="created before (ISO-8601)", json_schema_extra={"format": "date-time"}
    ),
    schedule: str | None = Query(None, max_length=200, description="started by this schedule"),
    trigger: str | None = Query(None, max_length=200, description="started by this trigger"),
    saved: str | None = Query(None, max_length=200, description="run from this saved plan (name)"),
) -> dict[str, Any]:
    filters = ListFilters(
        _text(plan, "plan"),
        _text(q, "q"),
        utc_param(since, "since"),
        utc_param(until, "until"),
        _text(schedule, "schedule"),
        _text(trigger, "trigger"),
        _text(saved, "saved"),
    )
    # Parsed here, not by PostgreSQL: a cursor that is no time is a 422, never a failed query.
    cursor = instant.isoformat() if (instant := utc_param(before, "before")) else None
    rows = await s.reader.listing(who.workspace_id, status, limit, cursor, filters)
    items = [
        {
            **r,
            "id": str(r["id"]),
            "created_at": r["created_at"].isoformat(),
            "updated_at": r["updated_at"].isoformat(),
        }
        for r in rows
    ]
    following = items[-1]["created_at"] if len(items) == limit else None
    return {"items": items, "next_before": following}


@router.get("/{execution_id}")
async def get_execution(
    execution_id: UUID, who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    return await view_of(s, execution_id, who)


@router.get("/{execution_id}/events")
async def history(
    execution_id: UUID,
    who: Principal = Reader,
    s: Services = Depends(services_of),
    after: int = Query(0, ge=0),
    limit: int = Query(1000, ge=1, le=10_000),
) -> dict[str, Any]:
    view = await view_of(s, execution_id, who)
    rows = await events_of(s, view, execution_id, after, limit)
    return {"items": [_event_row(r) for r in rows]}


async def events_of(
    s: Services, view: dict[str, Any], execution_id: UUID, after: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """The execution's history after ``after``: from the views, or from the archive once the
    execution is archived (``archived_at`` in its summary)."""
    if "archived_at" not in view or s.archives is None:
        return await s.reader.events(execution_id, after, limit)
    try:
        rows = await run_sync(s.archives.history, execution_id, view["workspace_id"])
    except ArchiveError as exc:
        raise HTTPException(503, f"execution {execution_id} is archived: {exc}") from None
    return [r for r in rows if r["seq"] > after][:limit]


@router.get("/{execution_id}/stream")
async def stream(
    execution_id: UUID,
    request: Request,
    who: Principal = Reader,
    s: Services = Depends(services_of),
    last_event_id: str | None = Header(None),
) -> EventSourceResponse:
    source = await events_stream(s, execution_id, who, request, last_event_id)
    return EventSourceResponse(source, ping=10)


async def events_stream(
    s: Services, execution_id: UUID, who: Principal, request: Request, last_event_id: str | None
) -> AsyncIterator[dict[str, Any]]:
    """The execution's events after ``Last-Event-ID``, as SSE items: live until it ends, or
    an archived history in one go (404 for another workspace's, before anything is sent)."""
    view = await view_of(s, execution_id, who)
    after = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0
    if "archived_at" in view:  # a finished history: all of it, then the end
        rows = await events_of(s, view, execution_id, after, 10_000)
        return _archived_stream(rows, view["status"])
    return follow(s, execution_id, after, request)


async def _archived_stream(
    rows: list[dict[str, Any]], status: str
) -> AsyncIterator[dict[str, Any]]:
    for row in rows:
        yield {"id": str(row["seq"]), "event": row["type"], "data": json.dumps(_event_row(row))}
    yield {"event": "end", "data": json.dumps({"status": status})}


@router.get("/{execution_id}/replay")
async def replay_at(
    execution_id: UUID,
    at: int = Query(..., ge=1, description="the state as of event N (1-based)"),
    who: Principal = Reader,
    s: Services = Depends(services_of),
) -> dict[str, Any]:
    """The execution's view as of its N-th event: the same fold as ``baton replay --at N``."""
    view = await view_of(s, execution_id, who)
    rows = await events_of(s, view, execution_id, 0, 10_000)
    if at > len(rows):
        raise HTTPException(422, f"at: this execution has {len(rows)} events (1…{len(rows)})")
    events = [decode(r["data"]) for r in rows[:at]]
    return {"at": at, "of": len(rows), "event": _event_row(rows[at - 1]), "view": fold(events)}


def _command_route(name: str) -> None:
    async def command(
        execution_id: UUID,
        body: Command | None = None,
        who: Principal = Runner,
        s: Services = Depends(services_of),
    ) -> JSONResponse:
        return await steer(s, execution_id, name, body, who)

    router.add_api_route(
        f"/{{execution_id}}/{name}", command, methods=["POST"], status_code=202, name=name
    )


for _name in ("pause", "resume", "cancel"):
    _command_route(_name)


async def steer(
    s: Services, execution_id: UUID, name: str, body: Command | None, who: Principal
) -> JSONResponse:
    """Record pause / resume / cancel, or say why it cannot apply (409)."""
    view = await view_of(s, execution_id, who)
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
    reason = body.reason if body else None
    await run_sync(s.intake.command, execution_id, name, reason, who.actor)
    return JSONResponse({"id": str(execution_id), "accepted": name}, 202)


def prepared(
    body: ExecutionCreate, header_key: str | None, policy: WorkspacePolicy, who: Principal
) -> dict[str, Any]:
    """The request as recorded: a plan is parsed and validated first (nothing stored if bad).
    CPU-heavy for a big plan: routes call it through ``off_loop``."""
    check_size("inputs", body.inputs, limits().inputs)  # before the plan's work
    data = body.model_dump()
    if body.plan_ref is not None:
        data["plan_ref"] = body.plan_ref.model_dump(exclude_none=True)
    data["idempotency_key"] = body.idempotency_key or header_key
    data["actor"] = who.actor
    plan = None
    if body.plan is not None:
        plan = read_plan(body.plan, body.inputs)[1]
        if problems := policy_problems(plan, policy):
            raise PlanInvalid(problems)
        data["plan"] = plan.model_dump(mode="json", exclude_defaults=True)
    data["simulation"] = simulation_request(body, plan)
    return data


async def view_of(s: Services, execution_id: UUID, who: Principal) -> dict[str, Any]:
    """The execution's view if it is the caller's workspace's; anything else is a 404."""
    view = await s.reader.get(execution_id)
    if view is None:
        view = await run_sync(_intake_view, s, execution_id)
    if view is None and s.archives is not None:  # past the summary period: the day index
        try:
            view = await run_sync(s.archives.folded_view, who.workspace_id, execution_id)
        except ArchiveError as exc:
            raise HTTPException(503, f"execution {execution_id} is archived: {exc}") from None
    if view is None or view["workspace_id"] != who.workspace_id:
        raise NotFound(f"no execution {execution_id}")
    return view


def _intake_view(s: Services, execution_id: UUID) -> dict[str, Any] | None:
    """Accepted but not yet projected: answer from the intake record, never a false 404."""
    intake = s.intake.load(execution_id)
    if intake is None or intake.request is None:
        return None
    r = intake.request
    return {
        "id": str(execution_id),
        "workspace_id": r.workspace_id,
        "status": "requested",
        "request": r.request,
        "inputs": redact(r.inputs),
        "plan": redact(r.plan),
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
        "data": redact(row["data"]),  # a sealed secret tool input shows as ***
    }


async def follow(
    s: Services, execution_id: UUID, after: int, request: Request
) -> AsyncIterator[dict[str, Any]]:
    """History after ``after``, then live events, until the execution ends or the client goes."""
    while await still_allowed(request):
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
