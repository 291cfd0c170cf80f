"""The saved-plan read models on real PostgreSQL: a version and a run are written once from
their events, a redelivered batch changes nothing, and a rebuild writes the same rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from baton_common import contracts as c
from baton_common.events import Event
from baton_projector.plans import PlanProjection
from baton_projector.projections import ExecutionProjection

pytestmark = pytest.mark.integration
PLAN = {"name": "report", "steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "x"}}]}


def history() -> list[Event]:
    """A version, then one execution of it: planned, started, one step retried once, succeeded."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    plan_id, eid = c.saved_plan_id("ws", "report"), uuid.uuid4()
    at = {"workspace_id": "ws", "aggregate_id": eid}
    step = {
        "step_id": "a",
        "tool": "mock.agent",
        "input": {},
        "idempotency_key": "k",
        "timeout_s": 5,
    }
    return [
        c.PlanVersionCreated(
            workspace_id="ws", aggregate_id=plan_id, aggregate_version=1, name="report",
            version=1, plan=PLAN, content_hash="sha256:x", actor="ada", current=True,
        ),
        c.ExecutionRequested(**at, aggregate_version=1, plan_ref={"name": "report"}),
        c.PlanProposed(
            workspace_id="ws", aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=PLAN,
            planner="saved", plan_ref={"name": "report", "version": 1, "chosen_by": "current"},
            occurred_at=t0,
        ),
        c.ExecutionStarted(**at, aggregate_version=1, plan=PLAN, occurred_at=t0 + timedelta(seconds=1)),
        c.StepDispatched(**at, aggregate_version=2, attempt=1, **step),
        c.StepFailed(**at, aggregate_version=3, step_id="a", attempt=1, error="boom"),
        c.StepDispatched(**at, aggregate_version=4, attempt=2, **step),
        c.StepSucceeded(**at, aggregate_version=5, step_id="a", attempt=2, duration_ms=250.0),
        c.ExecutionSucceeded(**at, aggregate_version=6, occurred_at=t0 + timedelta(seconds=3)),
    ]  # fmt: skip


def apply(conn: psycopg.Connection[Any], schema: str, events: list[Event]) -> None:
    with conn.transaction():
        ExecutionProjection(schema).apply_batch(conn, events)
        PlanProjection(schema).apply_batch(conn, events)


def rows(conn: psycopg.Connection[Any], schema: str) -> tuple[list[Any], list[Any]]:
    runs = conn.execute(
        f"SELECT name, version, chosen_by, status, started_at, finished_at, tool_calls, tool_ms"
        f" FROM {schema}.plan_runs"
    ).fetchall()
    versions = conn.execute(
        f"SELECT workspace_id, name, version, content_hash, author FROM {schema}.plan_versions"
    ).fetchall()
    return runs, versions


def test_runs_and_versions_are_written_once_and_a_rebuild_writes_the_same(
    views: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = views
    events = history()
    apply(conn, schema, events)
    first = rows(conn, schema)
    [run], [version] = first
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert run == (
        "report", 1, "current", "succeeded", t0 + timedelta(seconds=1),
        t0 + timedelta(seconds=3), 2, 250.0,
    )  # fmt: skip
    assert version == ("ws", "report", 1, "sha256:x", "ada")
    apply(conn, schema, events)  # redelivered: nothing changes
    assert rows(conn, schema) == first
    with conn.transaction():  # a rebuild: drop the views, fold the history again
        ExecutionProjection(schema).truncate(conn)
        PlanProjection(schema).truncate(conn)
    apply(conn, schema, events[:4])
    apply(conn, schema, events[4:])
    assert rows(conn, schema) == first
