"""Schedules: create, list, read (next fire times, recent runs), update, delete, pause, unpause,
trigger now, backfill, and a schedule's history.

The scheduler owns them: each call is forwarded over NATS request/reply (queue group
``scheduler``) and committed there before the answer, which carries the reason of a refusal
(``invalid cron``, ``unknown time zone`` …: a 422, nothing stored). Triggers use the same
routes (``routes/triggers.py``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.limits import check_size, limits
from baton_common.plans import PlanInvalid, read_plan
from baton_common.sealing import redact
from baton_common.workspaces import policy_problems
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse

from baton_gateway.domain import Principal
from baton_gateway.offload import off_loop
from baton_gateway.routes.deps import Reader, Runner, policy_of, services_of
from baton_gateway.routes.rpc import ask
from baton_gateway.routes.saved import saved_plan_named
from baton_gateway.services import Services
from baton_gateway.vetting import sealed

SCHEDULE_EXAMPLE = {
    "name": "nightly reports",
    "cron": "30 2 * * *",
    "timezone": "Europe/Paris",
    "request": "collect incident reports for api and billing and summarise them",
    "inputs": {"day": "${schedule.scheduled_for}"},
    "overlap": "skip",
    "catchup": "latest",
    "jitter_seconds": 30,
}
TRIGGER_EXAMPLE = {
    "name": "page on failure",
    "filter": {
        "type": "execution.failed",
        "plan": "nightly",
        "where": [{"path": "payload.error", "contains": "timeout"}],
    },
    "request": "tell the on-call that ${event.execution_id} failed: ${event.payload.error}",
}


async def ask_scheduler(s: Services, call: c.SchedulerCall) -> c.SchedulerReply:
    """One call, answered by whichever scheduler replica takes it (503 when none is up)."""
    subject = c.scheduler_subject(s.bus.settings.subject_root)
    return await ask(s, subject, call, c.SchedulerReply, "the scheduler")


async def forward(
    s: Services, who: Principal, kind: str, op: str, id_: UUID | None = None, body: Any = None
) -> JSONResponse:
    call = c.SchedulerCall(
        op=op,
        kind=kind,  # type: ignore[arg-type]
        workspace_id=who.workspace_id,
        actor=who.actor,
        id=str(id_) if id_ else None,
        body=body or {},
    )
    reply = await ask_scheduler(s, call)
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    return JSONResponse(redact(reply.body), reply.status)  # a sealed tool input as ***


async def checked_plan(s: Services, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """A plan in the body is validated here too, against the workspace's policy (a 422 with
    ``problems``, like ``POST /v1/executions``); a saved plan it names must exist (a 404)."""
    check_size("inputs", body.get("inputs") or {}, limits().inputs)
    await saved_plan_named(s, who, body.get("plan_ref"))
    plan = body.get("plan")
    if plan is None:
        return body
    raw, checked = await off_loop(read_plan, plan, body.get("inputs") or {})
    policy = await policy_of(s, who.workspace_id)
    if problems := policy_problems(checked, policy):
        raise PlanInvalid(problems)
    return await sealed({**body, "plan": raw}, s.sealer)  # its secret tool inputs


def routes(kind: str, example: dict[str, Any]) -> APIRouter:
    """The routes of one kind (``schedule`` or ``trigger``)."""
    router = APIRouter(prefix=f"/v1/{kind}s", tags=[f"{kind}s"])
    Def = Body(..., examples=[example])
    Note = Body(None, examples=[{"note": "paused for the migration"}])
    param = f"{kind}_id"
    Id = Path(..., alias=param, description=f"the {kind}'s id")

    @router.post("", status_code=201, name=f"create_{kind}")
    async def create(
        body: dict[str, Any] = Def, who: Principal = Runner, s: Services = Depends(services_of)
    ) -> JSONResponse:
        return await forward(s, who, kind, "create", body=await checked_plan(s, who, body))

    if kind == "schedule":

        @router.post("/preview", name="preview_schedule")
        async def preview(
            body: dict[str, Any] = Body(..., examples=[{**example, "count": 10}]),
            who: Principal = Reader,
            s: Services = Depends(services_of),
        ) -> JSONResponse:
            """The next ``count`` fire times of a definition, in its zone; nothing is stored."""
            return await forward(s, who, kind, "preview", body=body)

    @router.get("", name=f"list_{kind}s")
    async def listing(who: Principal = Reader, s: Services = Depends(services_of)) -> JSONResponse:
        return await forward(s, who, kind, "list")

    @router.get(f"/{{{param}}}", name=f"get_{kind}")
    async def get(
        object_id: UUID = Id,
        who: Principal = Reader,
        s: Services = Depends(services_of),
        next: int = Query(5, ge=1, le=100, description="how many next fire times"),
    ) -> JSONResponse:
        return await forward(s, who, kind, "get", object_id, {"next": next})

    @router.patch(f"/{{{param}}}", name=f"update_{kind}")
    async def update(
        object_id: UUID = Id,
        body: dict[str, Any] = Def,
        who: Principal = Runner,
        s: Services = Depends(services_of),
    ) -> JSONResponse:
        """Change some fields (``null`` removes one); the whole definition is checked again."""
        return await forward(s, who, kind, "update", object_id, await checked_plan(s, who, body))

    @router.delete(f"/{{{param}}}", name=f"delete_{kind}")
    async def delete(
        object_id: UUID = Id, who: Principal = Runner, s: Services = Depends(services_of)
    ) -> JSONResponse:
        return await forward(s, who, kind, "delete", object_id)

    for op in ("pause", "unpause"):
        _note_route(router, kind, op, Note, Id)

    @router.post(f"/{{{param}}}/trigger-now", status_code=202, name=f"trigger_{kind}_now")
    async def trigger_now(
        object_id: UUID = Id,
        body: dict[str, Any] | None = Body(None, examples=[{"payload": {"error": "test"}}]),
        who: Principal = Runner,
        s: Services = Depends(services_of),
    ) -> JSONResponse:
        """Fire once now (a schedule's overlap policy applies; a trigger takes a test
        ``payload``)."""
        check_size("payload", (body or {}).get("payload"), limits().inputs)  # it becomes inputs
        return await forward(s, who, kind, "trigger_now", object_id, body)

    @router.post(f"/{{{param}}}/backfill", status_code=202, name=f"backfill_{kind}")
    async def backfill(
        object_id: UUID = Id,
        body: dict[str, Any] = Body(
            ..., examples=[{"start": "2026-11-20T00:00:00", "end": "2026-11-24T23:59:59"}]
        ),
        who: Principal = Runner,
        s: Services = Depends(services_of),
    ) -> JSONResponse:
        """Run every tick of a past range once (a tick that already ran starts nothing)."""
        return await forward(s, who, kind, "backfill", object_id, body)

    @router.get(f"/{{{param}}}/events", name=f"{kind}_events")
    async def events(
        object_id: UUID = Id,
        who: Principal = Reader,
        s: Services = Depends(services_of),
        limit: int = Query(200, ge=1, le=5000),
    ) -> JSONResponse:
        """The history: every tick fired, skipped, buffered or missed; every firing."""
        return await forward(s, who, kind, "events", object_id, {"limit": limit})

    return router


def _note_route(router: APIRouter, kind: str, op: str, note: Any, id_: Any) -> None:
    async def command(
        object_id: UUID = id_,
        body: dict[str, Any] | None = note,
        who: Principal = Runner,
        s: Services = Depends(services_of),
    ) -> JSONResponse:
        return await forward(s, who, kind, op, object_id, body)

    router.add_api_route(f"/{{{kind}_id}}/{op}", command, methods=["POST"], name=f"{op}_{kind}")


router = routes("schedule", SCHEDULE_EXAMPLE)
