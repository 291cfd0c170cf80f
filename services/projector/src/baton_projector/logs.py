"""The step logs read model: every line of every attempt, in order, for live reading.

A chunk (``log.step_logged``) becomes one row per line, plus a marker row when the worker's
limits dropped lines. Rows are keyed by (event id, line number), so a redelivered chunk or a
rebuild's replay never writes a line twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.store import plain_text
from psycopg.sql import SQL, Identifier


def rows_of(e: c.StepLogged) -> list[tuple[Any, ...]]:
    """The chunk's lines as rows, and a marker after them if lines were dropped."""
    head = (e.aggregate_id, e.workspace_id, e.event_id)
    step = (e.step_id, e.attempt, e.kind, e.tool)
    rows = [
        (*head, n, *step, line.at, line.level, plain_text(line.message), line.cut, False)
        for n, line in enumerate(e.lines)
    ]
    if e.dropped:
        at = e.lines[-1].at if e.lines else e.occurred_at
        text = f"… {e.dropped} line(s) dropped: over the step log limit ({e.limit or 'limit'})"
        rows.append((*head, len(e.lines), *step, at, "warning", text, False, True))
    return rows


class LogProjection:
    """Folds ``log.step_logged`` chunks into the ``step_logs`` table."""

    def __init__(self, schema: str) -> None:
        self.s = Identifier(schema)
        self.applied = 0

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> int:
        rows = [r for e in events if isinstance(e, c.StepLogged) for r in rows_of(e)]
        if not rows:
            return 0
        with conn.cursor() as cur:
            cur.executemany(
                SQL(
                    "INSERT INTO {s}.step_logs (execution_id, workspace_id, event_id, n, step_id,"
                    " attempt, kind, tool, at, level, message, cut, marker) VALUES"
                    " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (event_id, n) DO NOTHING"
                ).format(s=self.s),
                rows,
            )
        self.applied += len(rows)
        return len(rows)

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL("TRUNCATE {s}.step_logs RESTART IDENTITY").format(s=self.s))
