"""The observability projections on real PostgreSQL: a redelivered batch changes nothing, and
log chunks become ordered lines with a marker for dropped ones."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.readmodels import create_tables
from baton_common.settings import Settings
from baton_projector.logs import LogProjection
from baton_projector.metrics import MetricsProjection

pytestmark = pytest.mark.integration


def execution(ws: str = "w1") -> list[Event]:
    eid = uuid4()
    head: dict[str, Any] = {"aggregate_id": eid, "correlation_id": eid, "workspace_id": ws}
    plan = {"name": "p", "steps": [{"id": "a", "tool": "http.request"}]}
    task = dict(step_id="a", tool="http.request", input={}, idempotency_key="k", timeout_s=5)
    return [
        c.ExecutionStarted(**head, plan=plan),
        c.StepDispatched(**head, attempt=1, **task),
        c.StepFailed(**head, step_id="a", attempt=1, error="boom"),
        c.StepDispatched(**head, attempt=2, **task),
        c.StepSucceeded(**head, step_id="a", attempt=2, duration_ms=40.0, output={"x": 1}),
        c.ExecutionSucceeded(**head),
    ]


def figures(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        f'SELECT metric, subject, outcome, count, total FROM "{schema}".business_metrics'
        " ORDER BY 1, 2, 3"
    ).fetchall()


def test_metrics_count_each_event_once_across_batches(settings: Settings) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        create_tables(conn, settings.db_schema)
        metrics = MetricsProjection(settings.db_schema)
        events = execution()
        with conn.transaction():  # the dispatch in one batch, its outcome in a later one
            metrics.apply_batch(conn, events[:2])
        with conn.transaction():
            metrics.apply_batch(conn, events[2:])
        once = figures(conn, settings.db_schema)
        with conn.transaction():  # redelivered
            metrics.apply_batch(conn, events)
        assert (
            figures(conn, settings.db_schema)
            == once
            == [
                ("executions", "p", "started", 1, 0.0),
                ("executions", "p", "succeeded", 1, 0.0),
                ("tool_attempts", "http.request", "failed", 1, 0.0),
                ("tool_attempts", "http.request", "succeeded", 1, 40.0),
            ]
        )
        left = conn.execute(f'SELECT count(*) FROM "{settings.db_schema}".business_metric_attempts')
        assert left.fetchone() == (0,)


def test_a_model_planners_calls_and_tokens_count_once(settings: Settings) -> None:
    eid = uuid4()
    head: dict[str, Any] = {"aggregate_id": eid, "correlation_id": eid, "workspace_id": "w1"}
    usage = {"model": "llama", "attempts": 2, "input_tokens": 900, "output_tokens": 120}
    planned = c.PlanProposed(
        **head, execution_id=eid, plan={}, planner="openai (llama)", usage=usage
    )
    offline = c.PlanProposed(**head, execution_id=eid, plan={}, planner="offline")
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        create_tables(conn, settings.db_schema)
        metrics = MetricsProjection(settings.db_schema)
        for _ in range(2):  # the second time redelivered: nothing changes
            with conn.transaction():
                metrics.apply_batch(conn, [planned, offline])
            assert figures(conn, settings.db_schema) == [
                ("llm_calls", "llama", "", 2, 0.0),
                ("llm_tokens", "llama", "input", 1, 900.0),
                ("llm_tokens", "llama", "output", 1, 120.0),
            ]


def test_log_chunks_become_lines_and_a_marker(settings: Settings) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        create_tables(conn, settings.db_schema)
        logs = LogProjection(settings.db_schema)
        eid, now = uuid4(), datetime.now(UTC)
        chunk = c.StepLogged(
            aggregate_id=eid,
            step_id="a",
            attempt=1,
            tool="debug.log",
            chunk=0,
            lines=[c.LogLine(at=now, message="one"), c.LogLine(at=now, message="two", cut=True)],
            dropped=5,
            limit="100 lines/s",
        )
        for _ in range(2):  # once more: a redelivery
            with conn.transaction():
                logs.apply_batch(conn, [chunk])
        rows = conn.execute(
            f'SELECT message, cut, marker FROM "{settings.db_schema}".step_logs'
            " WHERE execution_id = %s ORDER BY seq",
            (eid,),
        ).fetchall()
        assert rows[:2] == [("one", False, False), ("two", True, False)]
        assert len(rows) == 3 and rows[2][2] and "5 line(s) dropped" in rows[2][0]
