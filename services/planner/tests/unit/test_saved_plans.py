"""Saved plans on the in-memory store: versions, promote, rollback, A/B routing, and runs by name."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.store import MemoryEventStore
from baton_common.testing import state_of
from baton_planner.application import PlannerApp
from baton_planner.library import PlanLibrary
from baton_planner.offline import OfflinePlanner
from baton_planner.saved import SavedPlan


def plan(text: str) -> dict[str, Any]:
    return {"steps": [{"id": "say", "tool": "text.template", "input": {"template": text}}]}


def call(lib: PlanLibrary, op: str, name: str | None = "greet", **body: Any) -> c.PlanReply:
    commit, reply = lib.run(c.PlanCall(op=op, workspace_id="ws", actor="ada", name=name, body=body))
    if commit is not None:
        lib.store.commit(commit)
    return reply


def test_versions_are_numbered_and_identical_content_is_a_no_op() -> None:
    lib = PlanLibrary(MemoryEventStore("planner"))
    first = call(lib, "push", plan=plan("hi"), message="first")
    assert (first.status, first.body["version"], first.body["current"]) == (201, 1, 1)
    second = call(lib, "push", plan=plan("hello"))
    assert (second.status, second.body["version"], second.body["current"]) == (201, 2, 1)
    again = call(lib, "push", plan=plan("hi"))
    assert (again.status, again.body["version"], again.body["created"]) == (200, 1, False)
    view = call(lib, "get").body
    assert [v["version"] for v in view["versions"]] == [1, 2]
    assert view["versions"][0]["author"] == "ada" and view["versions"][0]["message"] == "first"
    assert view["versions"][0]["content_hash"].startswith("sha256:")
    assert call(lib, "list").body["items"][0]["latest_version"] == 2
    bad = call(lib, "push", plan={"steps": [{"id": "x", "tool": "no.such"}]})
    assert bad.status == 422 and bad.body["problems"]


def test_promote_then_rollback_in_one_call_and_missing_versions() -> None:
    lib = PlanLibrary(MemoryEventStore("planner"))
    for text in ("a", "b", "c"):
        call(lib, "push", plan=plan(text))
    assert call(lib, "rollback").status == 409  # nothing was ever promoted
    assert call(lib, "promote", version=3).body["current_version"] == 3
    assert call(lib, "promote", version=2).body["current_version"] == 2
    assert call(lib, "rollback").body["current_version"] == 3
    assert call(lib, "rollback").body["current_version"] == 1
    assert call(lib, "promote", version=9).status == 404
    assert call(lib, "diff", **{"from": 1, "to": 7}).status == 404
    assert call(lib, "get", name="nope").status == 404


def test_routing_is_checked_weighted_and_sticky() -> None:
    store = MemoryEventStore("planner")
    lib = PlanLibrary(store)
    call(lib, "push", plan=plan("a"))
    call(lib, "push", plan=plan("b"))
    assert (
        call(
            lib, "route", split=[{"version": 1, "weight": 70}, {"version": 2, "weight": 20}]
        ).status
        == 422
    )
    assert (
        call(
            lib, "route", split=[{"version": 1, "weight": 70}, {"version": 5, "weight": 30}]
        ).status
        == 422
    )
    ok = call(
        lib,
        "route",
        split=[{"version": 1, "weight": 70}, {"version": 2, "weight": 30}],
        sticky_key="user",
    )
    assert ok.status == 200
    saved = lib.load("ws", "greet")
    picks = [saved.choose(None, {"user": f"u{i}"}, uuid4()).version for i in range(2000)]
    assert 1260 <= picks.count(1) <= 1540  # 70 % ± 5 standard deviations (sd ≈ 20.5)
    assert {saved.choose(None, {"user": "u7"}, uuid4()).version for _ in range(20)} == {picks[7]}


async def test_an_execution_by_name_runs_the_exact_version_chosen_once() -> None:
    store = MemoryEventStore("planner")
    app = PlannerApp(store, OfflinePlanner())
    call(app.library, "push", plan=plan("one"))
    call(app.library, "push", plan=plan("two"))
    asks = [
        c.ExecutionRequested(
            aggregate_id=uuid4(), aggregate_version=1, workspace_id="ws", plan_ref=ref
        )
        for ref in ({"name": "greet"}, {"name": "greet", "version": 2}, {"name": "missing"})
    ]
    current, pinned, missing = (await app.handle([Delivery(a) for a in asks])).events
    assert isinstance(current, c.PlanProposed) and current.plan_ref == {
        "name": "greet",
        "version": 1,
        "chosen_by": "current",
    }
    assert current.plan["steps"][0]["input"]["template"] == "one"
    assert current.plan["name"] == "greet"
    assert isinstance(pinned, c.PlanProposed) and pinned.plan_ref["version"] == 2  # type: ignore[index]
    assert isinstance(missing, c.PlanningFailed) and "no saved plan 'missing'" in missing.reason


def test_a_saved_plan_loads_through_a_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_AGGREGATE_SNAPSHOT_EVERY", "3")
    lib = PlanLibrary(MemoryEventStore("planner"))
    for text in ("a", "b", "c"):
        call(lib, "push", plan=plan(text))
    call(lib, "promote", version=2)
    plan_id = c.saved_plan_id("ws", "greet")
    whole = SavedPlan.rebuild(plan_id, lib.store.load(plan_id))
    lib.aggregates.read = 0
    assert state_of(lib.load("ws", "greet")) == state_of(whole)  # its versions and all
    assert lib.aggregates.read == 1  # the promotion: the push of "c" loaded 3 and took one
