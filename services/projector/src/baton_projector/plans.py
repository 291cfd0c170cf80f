"""Saved plans' read models: every version (``plan_versions``) and every execution that ran a
saved plan (``plan_runs``), from which the per-version figures are counted (executions, success
rate, duration, cost) so the better version can be promoted.

Each row is written from facts, never incremented: a version row is inserted once; a run row is
set from the execution's view in the same transaction (the execution projection writes it
first). A redelivered event or a rebuild's replay writes the same rows again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.store import plain_text
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from baton_projector import bulk

# Events after which a run's row is set again from its execution's view: every event of the
# execution (its steps' attempts and durations too), so that the row is the same whichever
# batch an event came in: live, a few at a time, or a rebuild's large chunks.
RUN_EVENTS = (
    c.ExecutionStarted,
    c.ExecutionSucceeded,
    c.ExecutionFailed,
    c.ExecutionCancelled,
    c.PlanningFailed,
)


def _of_run(e: Event) -> bool:
    return isinstance(e, RUN_EVENTS) or e.type.startswith("execution.")


RUN_FROM_VIEW = """
UPDATE {s}.plan_runs r SET status = x.status,
  started_at = (x.view->>'started_at')::timestamptz,
  finished_at = (x.view->>'finished_at')::timestamptz,
  tool_calls = COALESCE((SELECT sum((st.value->>'attempts')::int) FROM jsonb_each(x.view->'steps') st), 0),
  tool_ms = COALESCE((SELECT sum((st.value->>'duration_ms')::float) FROM jsonb_each(x.view->'steps') st), 0)
FROM {s}.executions x WHERE x.id = r.execution_id AND r.execution_id = ANY(%s::uuid[])
"""


class PlanProjection:
    """Folds ``saved_plan.*`` events and saved-plan runs into ``plan_versions`` and ``plan_runs``."""

    def __init__(self, schema: str) -> None:
        self.s = Identifier(schema)

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> int:
        versions = [e for e in events if isinstance(e, c.PlanVersionCreated)]
        # a rehearsal (dry run, mock, replay) is not a run of the version: its figures stay clean
        runs = [
            e for e in events if isinstance(e, c.PlanProposed) and e.plan_ref and not e.simulation
        ]
        touched: set[UUID] = {e.execution_id for e in runs}
        touched |= {e.__dict__.get("execution_id") or e.aggregate_id for e in events if _of_run(e)}
        with conn.cursor() as cur:
            if versions:
                cur.executemany(SQL(_VERSION).format(s=self.s), [_version_row(e) for e in versions])
            if runs:
                cur.executemany(SQL(_RUN).format(s=self.s), [_run_row(e) for e in runs])
            if touched:
                cur.execute(SQL(RUN_FROM_VIEW).format(s=self.s), (bulk.uuids(touched),))
        return len(versions) + len(runs)

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL("TRUNCATE {s}.plan_versions, {s}.plan_runs").format(s=self.s))


_VERSION = (
    "INSERT INTO {s}.plan_versions (workspace_id, name, version, content_hash, author, message,"
    " created_at, plan) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_RUN = (
    "INSERT INTO {s}.plan_runs (execution_id, workspace_id, name, version, chosen_by, status,"
    " planned_at) VALUES (%s, %s, %s, %s, %s, 'planned', %s) ON CONFLICT DO NOTHING"
)


def _version_row(e: c.PlanVersionCreated) -> tuple[Any, ...]:
    return (
        e.workspace_id,
        e.name,
        e.version,
        e.content_hash,
        e.actor,
        plain_text(e.message),
        e.occurred_at,
        Jsonb(e.plan),
    )


def _run_row(e: c.PlanProposed) -> tuple[Any, ...]:
    ref = e.plan_ref or {}
    return (
        e.execution_id,
        e.workspace_id,
        ref.get("name"),
        int(ref.get("version") or 0),
        ref.get("chosen_by"),
        e.occurred_at,
    )
