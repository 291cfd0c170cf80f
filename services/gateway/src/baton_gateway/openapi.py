"""The published OpenAPI document: FastAPI's, plus what it cannot infer.

- ``Plan``: the plan's JSON Schema (``baton_common.plans.Plan``) as a component, referenced
  wherever a body carries a plan. The routes take a plan as a free mapping on purpose (their
  checks answer with ``problems`` per step, not pydantic's), so the schema is published here.
- ``links``: from each operation that creates something to the operations on the id it returns,
  so a client (or a stateful fuzzer) can follow create → read → act → delete.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from baton_common.contracts import registry
from baton_common.plans import Plan
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import WithJsonSchema

PLAN_REF = "#/components/schemas/Plan"
# A marker (pydantic would not keep a ``$ref`` to a schema it does not know): ``_add_plan``
# puts the plan's schema where it stands.
MARK = "x-baton-plan"
PlanField = WithJsonSchema({MARK: "plan"})
OptionalPlanField = WithJsonSchema({MARK: "optional"})
# ``POST /v1/plans/validate``: a plan, or ``{plan, inputs}`` (the inputs its references need).
ValidateField = WithJsonSchema(
    {
        "anyOf": [
            {MARK: "object"},
            {
                "type": "object",
                "properties": {"plan": {MARK: "plan"}, "inputs": {"type": "object"}},
                "required": ["plan"],
                "additionalProperties": False,
            },
        ]
    }
)
PLAN_TEXT = {"type": "string", "description": "the plan as JSON or YAML text"}
PLAN_OBJECT = {MARK: "object"}


def exactly_one_of(*names: str) -> dict[str, Any]:
    """A model's schema extra: exactly one of ``names`` is given (present and not null)."""
    return {
        "oneOf": [{"required": [n], "properties": {n: {"not": {"type": "null"}}}} for n in names]
    }


# (creating operation, status, its links: name → (method, path, {parameter: expression}))
Link = tuple[str, str, dict[str, str]]
LINKS: list[tuple[tuple[str, str], str, dict[str, Link]]] = []


def link(create: tuple[str, str], status: int, targets: dict[str, Link]) -> None:
    """Declare links from ``create`` (method, path) answering ``status`` to ``targets``."""
    LINKS.append((create, str(status), targets))


def _each(path: str, param: str, value: str, ops: dict[str, str]) -> dict[str, Link]:
    """Links named after ``ops`` ({name: "METHOD suffix"}) on ``path`` + suffix."""
    out: dict[str, Link] = {}
    for name, spec in ops.items():
        method, _, suffix = spec.partition(" ")
        out[name] = (method, path + suffix, {param: value})
    return out


def _made(
    collection: str, param: str, ops: dict[str, str], status: int = 201, field: str = "id"
) -> None:
    """Links from ``POST collection`` to ``ops`` on what it made, ``collection/{param}`` (the
    parameter is the response's ``field``)."""
    path = f"{collection}/{{{param}}}"
    link(("POST", collection), status, _each(path, param, f"$response.body#/{field}", ops))


def _declare() -> None:
    _made(
        "/v1/executions",
        "execution_id",
        {
            "GetExecution": "GET ",
            "GetExecutionEvents": "GET /events",
            "GetExecutionLogs": "GET /logs",
            "GetExecutionContext": "GET /context",
            "PauseExecution": "POST /pause",
            "ResumeExecution": "POST /resume",
            "CancelExecution": "POST /cancel",
        },
        202,
    )
    seed = {"SeedGet": "GET ", "SeedPause": "POST /pause", "SeedCancel": "POST /cancel"}
    _made("/api/orchestrate", "execution_id", seed, 202)
    for kind in ("schedule", "trigger"):
        title = kind.title()
        ops = {
            f"Get{title}": "GET ",
            f"Update{title}": "PATCH ",
            f"Pause{title}": "POST /pause",
            f"Unpause{title}": "POST /unpause",
            f"Get{title}Events": "GET /events",
            f"Trigger{title}Now": "POST /trigger-now",
            f"Backfill{title}": "POST /backfill",
            f"Delete{title}": "DELETE ",
        }
        _made(f"/v1/{kind}s", f"{kind}_id", ops)
    ops = {"GetEndpoint": "GET ", "RotateEndpoint": "POST /rotate", "DeleteEndpoint": "DELETE "}
    _made("/v1/webhooks/endpoints", "endpoint_id", ops)
    ops = {
        "GetSubscription": "GET ",
        "DisableSubscription": "POST /disable",
        "EnableSubscription": "POST /enable",
        "TestSubscription": "POST /test",
        "DeleteSubscription": "DELETE ",
    }
    _made("/v1/webhooks/subscriptions", "subscription_id", ops)
    ops = {
        "GetCalendar": "GET ",
        "ExportCalendar": "GET /ics",
        "ImportCalendar": "POST /ics",
        "ListCalendarEvents": "GET /events",
        "DeleteCalendar": "DELETE ",
    }
    _made("/v1/calendars", "calendar", ops, field="name")
    link(
        ("POST", "/v1/workspaces/{workspace_id}/keys"),
        201,
        {"RevokeKey": ("DELETE", "/v1/keys/{key_id}", {"key_id": "$response.body#/id"})},
    )
    ops = {"GetWorkspace": "GET ", "GetPolicy": "GET /policy", "ListKeys": "GET /keys"}
    _made("/v1/workspaces", "workspace_id", ops)
    plan = "/v1/plans/{name}"
    link(
        ("POST", "/v1/plans/{name}/versions"),
        201,
        {
            "GetPlan": ("GET", plan, {"name": "$request.path.name"}),
            "GetPlanVersion": (
                "GET",
                f"{plan}/versions/{{version}}",
                {"name": "$request.path.name", "version": "$response.body#/version"},
            ),
        },
    )

    _listed()


def _listed() -> None:
    """From a listing to its first item: reads and decisions on what exists already."""
    first = "$response.body#/items/0/id"
    approval = "/v1/approvals/{approval_id}"
    ops = {"GetApproval": "GET ", "DecideApproval": "POST /decision"}
    link(("GET", "/v1/approvals"), 200, _each(approval, "approval_id", first, ops))
    tool = {"GetTool": ("GET", "/v1/tools/{name}", {"name": "$response.body#/tools/0/name"})}
    link(("GET", "/v1/tools"), 200, tool)
    agent = {"GetAgent": ("GET", "/v1/agents/{name}", {"name": "$response.body#/agents/0/name"})}
    link(("GET", "/v1/agents"), 200, agent)
    delivery = "/v1/webhooks/deliveries/{delivery_id}"
    ops = {"GetDelivery": "GET ", "Redeliver": "POST /redeliver"}
    link(("GET", "/v1/webhooks/deliveries"), 200, _each(delivery, "delivery_id", first, ops))


_declare()


def document(app: FastAPI) -> dict[str, Any]:
    """The document, built once: FastAPI's, with the ``Plan`` component and the links."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title,
            version=app.version,
            openapi_version=app.openapi_version,
            description=app.description,
            routes=app.routes,
        )
        _add_definitions(doc)
        _add_plan(doc)
        _add_links(doc)
        _add_mcp(doc)
        app.openapi_schema = doc
    return app.openapi_schema


def _component(doc: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s schema as a component (its nested models beside it); a reference to it."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        if schemas.setdefault(name, definition) != definition:
            raise RuntimeError(f"two schemas named {name!r} in the OpenAPI document")
    schemas[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _add_plan(doc: dict[str, Any]) -> None:
    _component(doc, Plan)
    _place_plan(doc)


def _add_definitions(doc: dict[str, Any]) -> None:
    """What the scheduler accepts as a schedule and a trigger, published with the routes that
    forward them (the scheduler validates them: the gateway passes the body on as it is). The
    scheduler offers them as the ``baton.openapi`` entry point ``schedules``."""
    spec = _offered("schedules")
    if spec is None:  # a gateway installed without the scheduler: the bodies stay free
        return
    for kind, model in (("schedule", spec.ScheduleSpec), ("trigger", spec.TriggerSpec)):
        ref = _component(doc, model)
        schema = doc["components"]["schemas"][model.__name__]
        # a plan may be given as JSON / YAML text too: the gateway parses it first
        schema["properties"]["plan"] = {MARK: "optional"}
        schema["allOf"] = [exactly_one_of("request", "plan", "plan_ref")]
        if kind == "schedule":
            schema["allOf"].append(exactly_one_of("cron", "every_seconds", "at"))
        body = doc["paths"][f"/v1/{kind}s"]["post"]["requestBody"]["content"]["application/json"]
        body["schema"] = ref
    types = sorted(t for t in registry().types() if t.startswith(spec.TRIGGERABLE))
    doc["components"]["schemas"]["EventFilter"]["properties"]["type"]["enum"] = types


def _offered(name: str) -> Any:
    """What an installed service offers the gateway's document (a ``baton.openapi`` entry
    point), or None when that service is not installed here."""
    found = entry_points(group="baton.openapi", name=name)
    return next(iter(found)).load() if found else None


def _place_plan(node: Any) -> None:
    """Each marked schema becomes a ``Plan`` object or its text (or null, when optional)."""
    if isinstance(node, list):
        for item in node:
            _place_plan(item)
    if not isinstance(node, dict):
        return
    kind = node.pop(MARK, None)
    if kind == "object":
        node["$ref"] = PLAN_REF
    elif kind is not None:
        node["anyOf"] = [{"$ref": PLAN_REF}, PLAN_TEXT]
        if kind == "optional":
            node["anyOf"].append({"type": "null"})
    for value in node.values():
        _place_plan(value)


def _add_links(doc: dict[str, Any]) -> None:
    paths = doc["paths"]
    for (method, path), status, targets in LINKS:
        response = paths[path][method.lower()]["responses"][status]
        response["links"] = {
            name: {
                "operationId": paths[target][verb.lower()]["operationId"],
                "parameters": params,
            }
            for name, (verb, target, params) in targets.items()
        }


_MCP_SESSION = {
    "name": "Mcp-Session-Id",
    "in": "header",
    "required": False,
    "description": "the session, from the answer to `initialize` (handshake-era clients)",
    "schema": {"type": "string", "maxLength": 200},
}
_MCP_ANSWERS = {
    "400": {
        "description": "not a message of the protocol, or no session given where one is needed"
    },
    "401": {"description": "no API key, or one that does not work"},
    "404": {"description": "no such session (or it was opened with another key)"},
    "406": {"description": "the Accept header does not take what this answers"},
}


def _add_mcp(doc: dict[str, Any]) -> None:
    """``/mcp`` is served by the MCP SDK's streamable HTTP transport (routes/mcpdoor.py), not by
    a FastAPI route: described here, so the document names every door."""
    about = (
        "Baton as an MCP server (Model Context Protocol, streamable HTTP). Tools: plan, run, "
        "status, list_executions, approve, reject, cancel; executions are resources "
        "(baton://executions/{id}) with update notifications. The API key decides the workspace "
        "and the role, as on every route. See docs/mcp.md."
    )
    common = {"tags": ["mcp"], "security": [{"HTTPBearer": []}], "description": about}
    message = {
        "type": "object",
        "description": "a JSON-RPC 2.0 message of the protocol (a request, notification or answer)",
        "required": ["jsonrpc"],
        "properties": {
            "jsonrpc": {"type": "string", "enum": ["2.0"]},
            "id": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "method": {"type": "string"},
            "params": {"type": "object"},
        },
    }
    doc["paths"]["/mcp"] = {
        "post": {
            **common,
            "summary": "Send a message of the protocol",
            "operationId": "mcp_post",
            "parameters": [_MCP_SESSION],
            "requestBody": {"required": True, "content": {"application/json": {"schema": message}}},
            "responses": {
                "200": {"description": "the answer (JSON, or a stream of server-sent events)"},
                "202": {"description": "a notification or an answer, accepted"},
                **_MCP_ANSWERS,
            },
        },
        "get": {
            **common,
            "summary": "The session's stream of server messages (notifications)",
            "operationId": "mcp_get",
            "parameters": [_MCP_SESSION],
            "responses": {"200": {"description": "server-sent events"}, **_MCP_ANSWERS},
        },
        "delete": {
            **common,
            "summary": "End a session",
            "operationId": "mcp_delete",
            "parameters": [_MCP_SESSION],
            "responses": {"200": {"description": "the session ended"}, **_MCP_ANSWERS},
        },
    }
