"""Saved plans: push a version, list, read, diff two versions, promote, roll back, split
traffic between versions (A/B), and the figures of each version.

The planner owns them: each call is forwarded over NATS request/reply (queue group ``planner``)
and committed there before the answer. Figures come from the projector's ``plan_runs``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from baton_common import contracts as c
from baton_common.plans import PlanInvalid, read_plan
from baton_common.prices import cost_usd, llm_prices
from baton_common.workspaces import policy_problems
from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from baton_gateway.domain import Principal
from baton_gateway.offload import off_loop
from baton_gateway.openapi import PlanField
from baton_gateway.routes.deps import Reader, Runner, policy_of, services_of
from baton_gateway.routes.rpc import RPC_TIMEOUT_S, as_response, ask
from baton_gateway.services import Services
from baton_gateway.vetting import sealed

router = APIRouter(prefix="/v1/plans", tags=["saved plans"])
Name = Path(..., pattern=c.PLAN_NAME, description="the saved plan's name")
PLAN_EXAMPLE = {
    "plan": {"steps": [{"id": "hello", "tool": "text.template", "input": {"template": "hi"}}]},
    "message": "first version",
}


class VersionBody(BaseModel):
    """A new version: the plan (object, or JSON/YAML text), why, and whether it takes traffic
    now (the first version always does)."""

    model_config = ConfigDict(extra="forbid")
    plan: Annotated[dict[str, Any] | str, PlanField]
    message: str | None = Field(None, max_length=2000)
    promote: bool = False


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=c.MAX_VERSION)


class SplitPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, le=c.MAX_VERSION)
    weight: int = Field(ge=0, le=100)


class RoutingBody(BaseModel):
    """Weights sum to 100 and name existing versions; ``sticky_key``: an input whose value keeps
    a caller on one version (else each execution is routed on its own). ``[]`` ends the split."""

    model_config = ConfigDict(extra="forbid")
    split: list[SplitPart] = Field(max_length=20)
    sticky_key: str | None = Field(None, min_length=1, max_length=200)


async def call_planner(
    s: Services,
    who: Principal,
    op: str,
    name: str | None = None,
    body: Any = None,
    timeout_s: float = RPC_TIMEOUT_S,
) -> c.PlanReply:
    call = c.PlanCall(
        op=op, workspace_id=who.workspace_id, actor=who.actor, name=name, body=body or {}
    )
    subject = c.planner_subject(s.bus.settings.subject_root)
    return await ask(s, subject, call, c.PlanReply, "the planner", timeout_s)


async def saved_plans_exist(
    s: Services, who: Principal, items: Iterable[Any]
) -> dict[tuple[str, int | None], list[str]]:
    """Each ``plan_ref`` of a submission names a plan (and version) that exists: a 404 now
    rather than a failed execution later. The version that runs is chosen when it is planned.
    → for each ref, the inputs its versions send to secret tool fields (to seal at intake)."""
    refs = {(i.plan_ref.name, i.plan_ref.version) for i in items if i.plan_ref is not None}
    return {ref: await _resolve(s, who, *ref) for ref in sorted(refs, key=str)}


async def saved_plan_named(s: Services, who: Principal, ref: Any) -> None:
    """A schedule's, trigger's or webhook endpoint's ``plan_ref`` (``"name"``, ``"name@3"`` or
    ``{name, version?}``) names a plan (and version) that exists: a 404 when it is defined,
    not an execution that fails at each tick. The version that runs is still chosen when each
    execution is planned (a later promotion counts)."""
    if ref is None:
        return
    try:
        parsed = c.parse_plan_ref(ref)
    except ValueError:
        return  # malformed: the definition's owner refuses it with the reason (a 422)
    await _resolve(s, who, parsed["name"], parsed.get("version"))


async def _resolve(s: Services, who: Principal, name: str, version: int | None) -> list[str]:
    reply = await call_planner(s, who, "resolve", name, {"version": version})
    if reply.status >= 400:
        raise HTTPException(reply.status, f"plan_ref: {reply.detail}")
    body = reply.body if isinstance(reply.body, dict) else {}
    return [str(n) for n in body.get("secret_inputs") or []]


@router.post("/{name}/versions", status_code=201, name="push_plan_version")
async def push(
    body: VersionBody,
    name: str = Name,
    who: Principal = Runner,
    s: Services = Depends(services_of),
) -> Response:
    """Save an immutable version (validated: ``422`` with the problems). The same content as a
    version saved before is a no-op: ``200`` with that version."""
    raw, checked = await off_loop(read_plan, body.plan, None)
    policy = await policy_of(s, who.workspace_id)
    if problems := policy_problems(checked, policy):
        raise PlanInvalid(problems)
    data = {"plan": raw, "message": body.message, "promote": body.promote}
    data = await sealed(data, s.sealer)  # its secret tool inputs, before the planner stores it
    return as_response(await call_planner(s, who, "push", name, data), 200)


@router.get("", name="list_plans")
async def listing(who: Principal = Reader, s: Services = Depends(services_of)) -> Response:
    """The workspace's saved plans: current and latest version, and the A/B split."""
    return as_response(await call_planner(s, who, "list"), 200)


@router.get("/{name}", name="get_plan")
async def get(
    name: str = Name, who: Principal = Reader, s: Services = Depends(services_of)
) -> dict[str, Any]:
    """The plan's versions (author, message, hash), current version, routing, and each
    version's figures (executions, success rate, duration, cost) from the projection."""
    reply = await call_planner(s, who, "get", name)
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    figures = await version_figures(s, who.workspace_id, name)
    view: dict[str, Any] = reply.body
    for v in view["versions"]:
        v["figures"] = figures.get(v["version"], empty_figures())
    return view


@router.get("/{name}/versions/{version}", name="get_plan_version")
async def get_version(
    name: str = Name,
    version: int = Path(..., ge=1, le=c.MAX_VERSION),
    who: Principal = Reader,
    s: Services = Depends(services_of),
) -> Response:
    """One version, with its plan."""
    reply = await call_planner(s, who, "version", name, {"version": version})
    return as_response(reply, 200)


@router.get("/{name}/diff", name="diff_plan_versions")
async def diff(
    name: str = Name,
    from_: int = Query(..., alias="from", ge=1, le=c.MAX_VERSION),
    to: int = Query(..., ge=1, le=c.MAX_VERSION),
    who: Principal = Reader,
    s: Services = Depends(services_of),
) -> Response:
    """Steps added, removed, renamed (matched by tool and inputs), and field-level changes."""
    reply = await call_planner(s, who, "diff", name, {"from": from_, "to": to})
    return as_response(reply, 200)


@router.post("/{name}/promote", name="promote_plan_version")
async def promote(
    body: PromoteBody, name: str = Name, who: Principal = Runner, s: Services = Depends(services_of)
) -> Response:
    """Make ``version`` current: new executions run it (an A/B split ends)."""
    reply = await call_planner(s, who, "promote", name, body.model_dump())
    return as_response(reply, 200)


@router.post("/{name}/rollback", name="rollback_plan")
async def rollback(
    name: str = Name, who: Principal = Runner, s: Services = Depends(services_of)
) -> Response:
    """The version current before the last promotion is current again (``409`` if none).
    Running executions keep the version they started with."""
    return as_response(await call_planner(s, who, "rollback", name), 200)


@router.put("/{name}/routing", name="route_plan")
async def route(
    body: RoutingBody, name: str = Name, who: Principal = Runner, s: Services = Depends(services_of)
) -> Response:
    """Split new executions between versions by weight, sticky per ``sticky_key``'s value."""
    reply = await call_planner(s, who, "route", name, body.model_dump())
    return as_response(reply, 200)


def empty_figures() -> dict[str, Any]:
    return {
        "executions": 0,
        "finished": 0,
        "succeeded": 0,
        "success_rate": None,
        "p50_ms": None,
        "mean_ms": None,
        "tool_calls": 0,
        "tool_seconds": 0.0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_usd": None,
    }


FIGURES_SQL = (
    "SELECT version, count(*) AS executions,"
    " count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'cancelled')) AS finished,"
    " count(*) FILTER (WHERE status = 'succeeded') AS succeeded,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY {d}) AS p50_ms, avg({d}) AS mean_ms,"
    " COALESCE(sum(tool_calls), 0) AS tool_calls, COALESCE(sum(tool_ms), 0) AS tool_ms"
    " FROM {{s}}.plan_runs WHERE workspace_id = %s AND name = %s GROUP BY version ORDER BY version"
).format(d="extract(epoch FROM (finished_at - COALESCE(started_at, planned_at))) * 1000")


# LLM tokens of a version's runs, per model: the agent registry's attempts of those executions.
USAGE_SQL = (
    "SELECT r.version, t.model, COALESCE(sum(t.input_tokens), 0) AS input_tokens,"
    " COALESCE(sum(t.output_tokens), 0) AS output_tokens"
    " FROM {s}.plan_runs r JOIN {s}.tool_attempts t ON t.execution_id = r.execution_id"
    " WHERE r.workspace_id = %s AND r.name = %s AND t.outcome = 'succeeded'"
    " AND (t.input_tokens > 0 OR t.output_tokens > 0) GROUP BY r.version, t.model"
)


async def version_figures(s: Services, workspace_id: str, name: str) -> dict[int, dict[str, Any]]:
    """Per version: executions, finished, success rate, duration (p50, mean) and cost (tool
    calls made, retries included, tool seconds, LLM tokens and their price)."""
    rows = await s.reader._rows(FIGURES_SQL, (workspace_id, name))
    usage = await version_usage(s, workspace_id, name)
    out = {}
    for r in rows:
        finished = int(r["finished"])
        out[int(r["version"])] = {
            "executions": int(r["executions"]),
            "finished": finished,
            "succeeded": int(r["succeeded"]),
            "success_rate": round(int(r["succeeded"]) / finished, 4) if finished else None,
            "p50_ms": _num(r["p50_ms"]),
            "mean_ms": _num(r["mean_ms"]),
            "tool_calls": int(r["tool_calls"]),
            "tool_seconds": round(float(r["tool_ms"]) / 1000, 3),
            **usage.get(int(r["version"]), _no_usage()),
        }
    return out


async def version_usage(s: Services, workspace_id: str, name: str) -> dict[int, dict[str, Any]]:
    """Per version: LLM tokens in and out, and their cost at ``BATON_LLM_PRICES``."""
    per: dict[int, list[tuple[str | None, int, int]]] = {}
    for r in await s.reader._rows(USAGE_SQL, (workspace_id, name)):
        per.setdefault(int(r["version"]), []).append(
            (r["model"], int(r["input_tokens"]), int(r["output_tokens"]))
        )
    prices = llm_prices()
    return {
        version: {
            "input_tokens": sum(u[1] for u in rows),
            "output_tokens": sum(u[2] for u in rows),
            "cost_usd": cost_usd(rows, prices),
        }
        for version, rows in per.items()
    }


def _no_usage() -> dict[str, Any]:
    return {"input_tokens": 0, "output_tokens": 0, "cost_usd": None}


def _num(value: Any) -> float | None:
    return round(float(value), 1) if value is not None else None
