"""The agent registry: one row per attempt of a tool call (``tool_attempts``), from step events.

``execution.step_dispatched`` opens an attempt (its tool and workspace); the step's
``step_succeeded`` / ``step_failed`` for the same attempt closes it with its duration, error class
and LLM usage (model, tokens in and out). Only ``run`` attempts count (a compensation is not a call of the tool's service).
Applying is idempotent (insert once, close once), so redelivery never counts twice; a rebuild
truncates the table and folds the stream again, giving the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.store import plain_text
from baton_common.toolstats import error_class, usage_of
from psycopg.sql import SQL, Identifier

from baton_projector import bulk

_OPEN_TYPES = ("uuid", "text", "int", "text", "text", "timestamptz", "text", "float8", "text",
               "text", "bigint", "text", "bigint", "bigint")  # fmt: skip
# An attempt opened and closed in one batch is one row; opened only, its close fields are null.
_OPEN = """ON CONFLICT (execution_id, step_id, attempt) DO UPDATE SET outcome = excluded.outcome,
    duration_ms = excluded.duration_ms, error = excluded.error, error_class = excluded.error_class,
    tokens = excluded.tokens, model = excluded.model, input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens
    WHERE tool_attempts.outcome IS NULL AND excluded.outcome IS NOT NULL"""
_CLOSE_TYPES = ("text", "float8", "text", "text", "bigint", "text", "bigint", "bigint", "uuid",
                "text", "int")  # fmt: skip
_CLOSE = """UPDATE {s}.tool_attempts t SET outcome = r.c0, duration_ms = r.c1, error = r.c2,
    error_class = r.c3, tokens = r.c4, model = r.c5, input_tokens = r.c6, output_tokens = r.c7
    FROM {rows} WHERE t.execution_id = r.c8 AND t.step_id = r.c9 AND t.attempt = r.c10
    AND t.outcome IS NULL"""
_COLUMNS = """{s}.tool_attempts (execution_id, step_id, attempt, workspace_id, tool, dispatched_at,
    outcome, duration_ms, error, error_class, tokens, model, input_tokens, output_tokens)"""
_NOT_CLOSED = (None, None, None, None, 0, None, 0, 0)

Key = tuple[Any, str, int]


class AgentProjection:
    """Folds step events into ``tool_attempts``."""

    def __init__(self, schema: str) -> None:
        self.s = Identifier(schema)

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> None:
        # Every open is written before any close (a batch may hold an attempt's dispatch and its
        # outcome): the first open of a key inserts, the first close of a key closes.
        opens: dict[Key, tuple[Any, ...]] = {}
        closes: dict[Key, tuple[Any, ...]] = {}
        for e in events:
            if e.__dict__.get("kind") != "run":  # (getattr of a missing field: an exception)
                continue
            key = (e.aggregate_id, e.step_id, e.attempt)  # type: ignore[attr-defined]
            call = c.call_of(e)  # a task, or a pure step's one event: the attempt opens
            if call is not None and isinstance(e, c.StepDispatched | c.StepSucceeded):
                opens.setdefault(key, (e.workspace_id, call.tool, e.occurred_at))
            if isinstance(e, c.StepSucceeded | c.StepFailed):
                closes.setdefault(key, _closed(e))
        rows = [(*k, *o, *closes.pop(k, _NOT_CLOSED)) for k, o in opens.items()]
        bulk.insert(conn, SQL(_COLUMNS).format(s=self.s), _OPEN_TYPES, rows, _OPEN)
        if closes:
            source, params = bulk.rows_from(_CLOSE_TYPES, [(*v, *k) for k, v in closes.items()])
            conn.execute(SQL(_CLOSE).format(s=self.s, rows=source), params)

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL("TRUNCATE {s}.tool_attempts").format(s=self.s))


def _closed(e: c.StepSucceeded | c.StepFailed) -> tuple[Any, ...]:
    """An attempt's close fields: outcome, duration, error, its class and the LLM usage."""
    if isinstance(e, c.StepSucceeded):
        u = usage_of(e.output)
        return ("succeeded", e.duration_ms, None, None, u.total, u.model, u.input_tokens,
                u.output_tokens)  # fmt: skip
    return ("failed", None, plain_text(e.error[:2000]), error_class(e.error), 0, None, 0, 0)
