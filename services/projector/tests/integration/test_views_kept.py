"""The views the projector keeps between batches are bounded by the size of their JSON (issue 32:
a burst of 20,000 submissions kept 20,000 views of executions not yet started), and a view it
let go is read back from its table, folding to the same view as one it kept."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from baton_common import contracts as c
from baton_common.events import Event
from baton_projector.projections import ExecutionProjection

pytestmark = pytest.mark.integration
PLAN = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "x" * 200}}]}
STEP = {"step_id": "a", "tool": "mock.agent", "input": {}, "idempotency_key": "k", "timeout_s": 5}


def started(eid: uuid.UUID) -> list[Event]:
    at = {"workspace_id": "ws", "aggregate_id": eid}
    return [
        c.ExecutionRequested(**at, aggregate_version=1, plan=PLAN),
        c.ExecutionStarted(**at, aggregate_version=1, plan=PLAN),
    ]


def finished(eid: uuid.UUID) -> list[Event]:
    at = {"workspace_id": "ws", "aggregate_id": eid}
    return [
        c.StepDispatched(**at, aggregate_version=2, attempt=1, **STEP),
        c.StepSucceeded(**at, aggregate_version=3, step_id="a", attempt=1, duration_ms=5.0),
        c.ExecutionSucceeded(**at, aggregate_version=4),
    ]


def fold(
    conn: psycopg.Connection[Any],
    schema: str,
    projection: ExecutionProjection,
    batches: list[list[Event]],
) -> dict[Any, Any]:
    for batch in batches:
        with conn.transaction():
            projection.apply_batch(conn, batch)
        assert sum(len(doc) for doc in projection.cache.values()) <= projection.cache_bytes
    rows = conn.execute(f"SELECT id, view FROM {schema}.executions").fetchall()
    return dict(rows)


def test_the_views_kept_are_bounded_by_bytes_and_one_let_go_folds_the_same(
    views: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = views
    ids = [uuid.uuid4() for _ in range(200)]
    batches = [[e for i in ids for e in started(i)], [e for i in ids for e in finished(i)]]
    bounded = ExecutionProjection(schema, cache_bytes=20_000)
    with conn.transaction():
        bounded.apply_batch(conn, batches[0])
    assert 0 < len(bounded.cache) < 200  # running, not parked: only the bound let them go
    with conn.transaction():
        bounded.truncate(conn)
    small = fold(conn, schema, ExecutionProjection(schema, cache_bytes=20_000), batches)
    with conn.transaction():
        bounded.truncate(conn)
    large = fold(conn, schema, ExecutionProjection(schema, cache_bytes=1 << 30), batches)
    assert len(small) == 200
    assert small == large
    assert {v["status"] for v in small.values()} == {"succeeded"}


def test_a_view_orjson_refuses_is_written_all_the_same_and_not_kept(
    views: tuple[psycopg.Connection[Any], str],
) -> None:
    """An integer beyond 64 bits in a step's output: the batch's rows go through psycopg's
    ``json`` fallback, and that view is read from its table next time."""
    conn, schema = views
    big, small = uuid.uuid4(), uuid.uuid4()
    at = {"workspace_id": "ws", "aggregate_id": big}
    events = [
        *started(big),
        *started(small),
        c.StepDispatched(**at, aggregate_version=2, attempt=1, **{**STEP, "step_id": "a"}),
        c.StepSucceeded(**at, aggregate_version=3, step_id="a", attempt=1, output={"n": 2**70}),
    ]
    projection = ExecutionProjection(schema)
    with conn.transaction():
        projection.apply_batch(conn, events)
    [(view,)] = conn.execute(f"SELECT view FROM {schema}.executions WHERE id = %s", (big,))
    assert view["steps"]["a"]["output"] == {"n": 2**70}
    assert list(projection.cache) == [small]
