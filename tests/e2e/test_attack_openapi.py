"""Regressions of what the OpenAPI fuzzer (schemathesis) found, on the engine as processes:
each request once answered a server error (or held the gateway for seconds); each is now a 4xx
that says why, or a prompt answer."""

from __future__ import annotations

import time
from typing import Any as Engine  # the fixture's type lives in conftest.py
from uuid import uuid4

import pytest

pytestmark = pytest.mark.e2e


def test_a_listing_cursor_that_is_no_time_is_a_422(engine: Engine) -> None:
    listed = engine.http.get(f"{engine.url}/v1/executions", params={"before": "null"})
    assert listed.status_code == 422 and "before" in listed.json()["detail"]
    cursor = "2026-12-07T10:00:00.123456+00:00"  # what next_before looks like
    paged = engine.http.get(f"{engine.url}/v1/executions", params={"before": cursor})
    assert paged.status_code == 200 and "items" in paged.json()


def test_listing_times_postgresql_cannot_take_are_answered_not_a_500(engine: Engine) -> None:
    url = f"{engine.url}/v1/executions"
    # offsets past PostgreSQL's ±15:59 and ancient years: converted to UTC, a plain answer
    odd = {"before": "0139-12-05T00:31:38+22:03", "until": "0548-03-05T09:29:17-05:51"}
    listed = engine.http.get(url, params={**odd, "status": "cancelling"})
    assert listed.status_code == 200 and listed.json()["items"] == [], listed.text
    beyond = engine.http.get(url, params={"until": "0001-01-01T00:00:00+01:00"})  # before year 1
    assert beyond.status_code == 422 and "until" in beyond.json()["detail"]
    nul = engine.http.get(url, params={"q": "a\x00b"})
    assert nul.status_code == 422 and "NUL" in nul.json()["detail"]
    empty = engine.http.get(url, params={"before": ""})  # a client's empty cursor: the first page
    assert empty.status_code == 200 and "items" in empty.json(), empty.text


def test_replaying_dead_letter_zero_is_a_422(engine: Engine) -> None:
    replayed = engine.http.post(f"{engine.url}/v1/deadletters/0/replay")
    assert replayed.status_code == 422 and "seq" in replayed.json()["detail"]


def test_a_deadline_that_is_neither_seconds_nor_a_duration_is_a_422(engine: Engine) -> None:
    plan = {
        "approval": {"plan": True, "escalation_deadline": {}},
        "steps": [{"id": "a", "tool": "text.template", "input": {"template": "hi"}}],
    }
    checked = engine.http.post(f"{engine.url}/v1/plans/validate", json={"plan": plan})
    assert checked.status_code == 422
    assert "neither seconds nor an ISO-8601 duration" in checked.json()["detail"]
    pushed = engine.http.post(f"{engine.url}/v1/plans/fuzzed/versions", json={"plan": plan})
    assert pushed.status_code == 422


def test_a_thousand_step_chain_is_checked_at_once(engine: Engine) -> None:
    """Each step needs the next: deeper than Python's recursion limit (the cycle check once
    failed with a 500) and a thousand waves to order (the order once took ~40 s, during which
    the gateway answered nothing else)."""
    steps = [
        {
            "id": f"s{i}",
            "tool": "text.template",
            "input": {"template": "x"},
            "depends_on": [f"s{i + 1}"] if i < 999 else [],
        }
        for i in range(1000)
    ]
    started = time.monotonic()
    checked = engine.http.post(f"{engine.url}/v1/plans/validate", json={"steps": steps})
    assert checked.status_code == 200, checked.text
    assert checked.json()["order"][:2] == ["s999", "s998"] and time.monotonic() - started < 10


def test_validate_takes_a_plan_or_plan_and_inputs_and_nothing_else(engine: Engine) -> None:
    plan = {"steps": [{"id": "a", "tool": "text.template", "input": {"template": "hi"}}]}
    extra = engine.http.post(f"{engine.url}/v1/plans/validate", json={"plan": plan, "inputz": {}})
    assert extra.status_code == 422 and "inputz" in extra.json()["detail"]
    listed = engine.http.post(f"{engine.url}/v1/plans/validate", json={"plan": plan, "inputs": []})
    assert listed.status_code == 422 and listed.json()["detail"].startswith("inputs:")


def test_a_caldav_url_that_cannot_be_reached_is_a_422_and_nothing_is_stored(
    engine: Engine,
) -> None:
    name = f"gone-{uuid4().hex[:6]}"
    made = engine.http.post(
        f"{engine.url}/v1/calendars", json={"name": name, "url": "http://127.0.0.1:9/dav/"}
    )
    assert made.status_code == 422 and made.json()["detail"].startswith("url:")
    names = {c["name"] for c in engine.http.get(f"{engine.url}/v1/calendars").json()["items"]}
    assert name not in names


def test_a_deleted_calendars_name_can_be_connected_again(engine: Engine) -> None:
    name = f"again-{uuid4().hex[:6]}"
    assert engine.http.post(f"{engine.url}/v1/calendars", json={"name": name}).status_code == 201
    assert engine.http.delete(f"{engine.url}/v1/calendars/{name}").status_code == 204
    again = engine.http.post(
        f"{engine.url}/v1/calendars", json={"name": name, "timezone": "Europe/Paris"}
    )
    assert again.status_code == 201 and again.json()["timezone"] == "Europe/Paris", again.text
    assert engine.http.delete(f"{engine.url}/v1/calendars/{name}").status_code == 204


def test_a_reference_that_never_closes_is_read_at_once(engine: Engine) -> None:
    """``${`` and 2,000 spaces once held the gateway's event loop for 20 s (a lazy pattern
    that tried every split of the spaces)."""
    step = {"id": "a", "tool": "text.template", "input": {"template": "${" + " " * 5000}}
    started = time.monotonic()
    checked = engine.http.post(f"{engine.url}/v1/plans/validate", json={"steps": [step]})
    assert checked.status_code == 200 and time.monotonic() - started < 5, checked.text


@pytest.mark.parametrize("query", ["\x0b", "\x1c "])
def test_the_seed_route_refuses_a_query_of_only_spaces(engine: Engine, query: str) -> None:
    """A vertical tab passed ``min_length`` but left no request in words: the execution the
    route built from it failed its own check, as a 500."""
    started = engine.http.post(f"{engine.url}/api/orchestrate", json={"query": query})
    assert started.status_code == 422 and "query" in started.json()["detail"]
