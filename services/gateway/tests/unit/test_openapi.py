"""The published OpenAPI document: the plan's schema where bodies carry a plan, request schemas
as strict as the routes, and links from each create to what acts on its id."""

from __future__ import annotations

from typing import Any
from unittest.mock import MagicMock

import jsonschema
import pytest
from baton_gateway.api import create_app
from baton_gateway.services import Services


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    app = create_app(Services(intake=MagicMock(), reader=MagicMock(), access=MagicMock()))
    return app.openapi()


def _resolved(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the document's components beside it, for a validator."""
    return {**schema, "components": doc["components"]}


def _operation(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = doc["paths"][path][method.lower()]
    return op


def _body(doc: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = _operation(doc, method, path)["requestBody"]["content"]
    schema: dict[str, Any] = content["application/json"]["schema"]
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_plan_schema_is_published_and_refuses_what_the_api_refuses(
    doc: dict[str, Any],
) -> None:
    plan = doc["components"]["schemas"]["Plan"]
    check = jsonschema.Draft202012Validator(_resolved(doc, plan))
    good = {"steps": [{"id": "a", "tool": "text.template", "input": {"template": "hi"}}]}
    assert check.is_valid(good)
    assert not check.is_valid({**good, "extra": 1})  # extra fields are refused
    assert not check.is_valid({"steps": []})
    assert not check.is_valid({"steps": [{"id": "has space", "tool": "x"}]})
    deadline = {"plan": True, "deadline": "PT30M"}  # a duration is a deadline too
    assert check.is_valid({**good, "approval": deadline})


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("POST", "/v1/executions", "plan"),
        ("POST", "/v1/plans/{name}/versions", "plan"),
    ],
)
def test_bodies_that_carry_a_plan_reference_it(
    doc: dict[str, Any], method: str, path: str, field: str
) -> None:
    schema = _body(doc, method, path)["properties"][field]
    assert {"$ref": "#/components/schemas/Plan"} in schema["anyOf"]


def test_validate_takes_a_plan_or_plan_and_inputs(doc: dict[str, Any]) -> None:
    check = jsonschema.Draft202012Validator(
        _resolved(doc, _body(doc, "POST", "/v1/plans/validate"))
    )
    plan = {"steps": [{"id": "a", "tool": "text.template"}]}
    assert check.is_valid(plan) and check.is_valid({"plan": plan, "inputs": {}})
    assert check.is_valid({"plan": "steps: []"})  # YAML or JSON text
    assert not check.is_valid({"plan": plan, "inputz": {}})
    assert not check.is_valid({"plan": plan, "inputs": []})


def test_listing_cursors_and_dead_letters_publish_their_formats(doc: dict[str, Any]) -> None:
    params = {p["name"]: p for p in _operation(doc, "GET", "/v1/executions")["parameters"]}
    for name in ("before", "since", "until"):  # a time, or empty (no cursor, no bound)
        schema = params[name]["schema"]
        assert schema["format"] == "date-time"
        assert {"type": "string"} in schema["anyOf"] and {"type": "null"} in schema["anyOf"]
    seq = _operation(doc, "POST", "/v1/deadletters/{seq}/replay")["parameters"][0]["schema"]
    assert seq["minimum"] == 1


def _checker(doc: dict[str, Any], method: str, path: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(_resolved(doc, _body(doc, method, path)))


def test_a_submission_gives_exactly_one_of_request_plan_and_plan_ref(doc: dict[str, Any]) -> None:
    check = _checker(doc, "POST", "/v1/executions")
    assert check.is_valid({"request": "say hi"})
    assert check.is_valid({"plan_ref": {"name": "nightly"}, "plan": None})
    assert not check.is_valid({"request": "say hi", "plan_ref": {"name": "nightly"}})
    assert not check.is_valid({"inputs": {}})


def test_schedule_and_trigger_bodies_are_the_schedulers_definitions(doc: dict[str, Any]) -> None:
    schedule = _checker(doc, "POST", "/v1/schedules")
    assert schedule.is_valid({"name": "n", "cron": "* * * * *", "request": "say hi"})
    assert schedule.is_valid({"name": "n", "every_seconds": 60, "plan": "steps: []"})
    assert not schedule.is_valid(
        {"name": "n", "cron": "* * * * *", "every_seconds": 5, "request": "x"}
    )
    assert not schedule.is_valid({"name": "n", "cron": "* * * * *", "request": "x", "extra": 1})
    trigger = _checker(doc, "POST", "/v1/triggers")
    assert trigger.is_valid({"name": "t", "filter": {"type": "execution.failed"}, "request": "x"})
    assert not trigger.is_valid(
        {"name": "t", "filter": {"type": "execution.step_started"}, "request": "x"}
    )


def test_decisions_endpoints_and_ics_imports_publish_what_they_take(doc: dict[str, Any]) -> None:
    decide = _checker(doc, "POST", "/v1/approvals/{approval_id}/decision")
    assert decide.is_valid({"decision": "edit", "input": {"a": 1}})
    assert decide.is_valid({"decision": "approve", "comment": "fine"})
    assert not decide.is_valid({"decision": "edit"})
    assert not decide.is_valid({"decision": "reject", "input": {"a": 1}})
    endpoint = _checker(doc, "POST", "/v1/webhooks/endpoints")
    assert endpoint.is_valid({"name": "gh", "action": {"request": "triage ${payload.issue}"}})
    assert not endpoint.is_valid({"name": "gh", "action": {"request": "x", "plan_ref": "p"}})
    assert not endpoint.is_valid({"name": "gh", "action": {"plan": {"steps": []}}})
    body = _operation(doc, "POST", "/v1/calendars/{calendar}/ics")["requestBody"]
    assert list(body["content"]) == ["text/calendar"]


def test_calendar_bodies_publish_rooms_and_resources(doc: dict[str, Any]) -> None:
    calendar = _checker(doc, "POST", "/v1/calendars")
    assert calendar.is_valid({"name": "room-4", "owner": "r4@x.example", "kind": "room",
                              "capacity": 8})  # fmt: skip
    assert not calendar.is_valid({"name": "room-4", "kind": "hall"})
    assert not calendar.is_valid({"name": "room-4", "kind": "room", "capacity": 0})
    slots = _checker(doc, "POST", "/v1/calendars/slots")
    ask = {"attendees": ["a@x"], "duration_minutes": 30, "window_start": "today",
           "window_end": "today"}  # fmt: skip
    assert slots.is_valid({**ask, "rooms": "any", "resources": ["beamer"], "min_capacity": 4})
    assert slots.is_valid({**ask, "rooms": ["room-4", "room-5"]})
    assert not slots.is_valid({**ask, "rooms": "all"})
    marked = _checker(doc, "PATCH", "/v1/calendars/{calendar}")
    assert marked.is_valid({"kind": "equipment", "owner": "beamer@x.example"})
    assert not marked.is_valid({"kind": "room", "name": "renamed"})
    conflicts = _checker(doc, "POST", "/v1/calendars/conflicts")
    assert conflicts.is_valid({"start": "x", "end": "y", "resources": ["room-4"]})
    assert not conflicts.is_valid({"start": "x", "end": "y", "resources": "room-4"})


@pytest.mark.parametrize(
    ("create", "status", "target"),
    [
        ("POST /v1/executions", "202", "GET /v1/executions/{execution_id}"),
        ("POST /v1/schedules", "201", "DELETE /v1/schedules/{schedule_id}"),
        ("POST /v1/triggers", "201", "GET /v1/triggers/{trigger_id}"),
        ("POST /v1/webhooks/endpoints", "201", "DELETE /v1/webhooks/endpoints/{endpoint_id}"),
        (
            "POST /v1/webhooks/subscriptions",
            "201",
            "DELETE /v1/webhooks/subscriptions/{subscription_id}",
        ),
        ("POST /v1/calendars", "201", "GET /v1/calendars/{calendar}"),
        ("POST /v1/workspaces/{workspace_id}/keys", "201", "DELETE /v1/keys/{key_id}"),
    ],
)
def test_each_create_links_to_what_acts_on_its_id(
    doc: dict[str, Any], create: str, status: str, target: str
) -> None:
    method, path = create.split(" ", 1)
    links = _operation(doc, method, path)["responses"][status]["links"]
    verb, where = target.split(" ", 1)
    wanted = _operation(doc, verb, where)["operationId"]
    found = [link for link in links.values() if link["operationId"] == wanted]
    assert found, f"{create} has no link to {target}"
    (param,) = found[0]["parameters"]
    assert f"{{{param}}}" in where


def test_schedule_and_trigger_bodies_are_the_schedulers_found_through_its_entry_point(
    doc: dict[str, Any],
) -> None:
    """The scheduler offers its definitions as the ``baton.openapi`` entry point ``schedules``:
    the gateway imports no service to publish them."""
    schedule = _body(doc, "POST", "/v1/schedules")
    trigger = _body(doc, "POST", "/v1/triggers")
    assert {"cron", "every_seconds", "at", "timezone"} <= set(schedule["properties"])
    assert "filter" in trigger["properties"]
    check = jsonschema.Draft202012Validator(_resolved(doc, schedule))
    assert check.is_valid({"name": "n", "request": "collect reports", "cron": "0 9 * * *"})
    assert not check.is_valid({"name": "n", "request": "r", "cron": "0 9 * * *", "at": "x"})
    types = doc["components"]["schemas"]["EventFilter"]["properties"]["type"]["enum"]
    assert "execution.failed" in types and "execution.step_succeeded" not in types


def test_the_metrics_summary_documents_the_engine_figures(doc: dict[str, Any]) -> None:
    ok = _operation(doc, "GET", "/v1/metrics/summary")["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    summary = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert {"throughput", "totals", "engine"} <= set(summary["properties"])
    figures = doc["components"]["schemas"]["EngineFigures"]["properties"]
    assert {"throughput", "consumers", "oldest_pending_age_s", "dead_letters"} <= set(figures)
    consumer = doc["components"]["schemas"]["ConsumerFigures"]["properties"]
    assert {"pending", "ack_pending", "redelivered", "oldest_pending_age_s"} <= set(consumer)
