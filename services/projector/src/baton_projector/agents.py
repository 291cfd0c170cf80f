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

_OPEN = """INSERT INTO {s}.tool_attempts (execution_id, step_id, attempt, workspace_id, tool,
    dispatched_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"""
_CLOSE = """UPDATE {s}.tool_attempts SET outcome = %s, duration_ms = %s, error = %s,
    error_class = %s, tokens = %s, model = %s, input_tokens = %s, output_tokens = %s
    WHERE execution_id = %s AND step_id = %s AND attempt = %s AND outcome IS NULL"""


class AgentProjection:
    """Folds step events into ``tool_attempts``."""

    def __init__(self, schema: str) -> None:
        self.s = Identifier(schema)

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> None:
        opens: list[tuple[Any, ...]] = []
        closes: list[tuple[Any, ...]] = []
        for e in events:
            if getattr(e, "kind", None) != "run":
                continue
            call = c.call_of(e)  # a task, or a pure step's one event: the attempt opens
            if call is not None and isinstance(e, c.StepDispatched | c.StepSucceeded):
                opens.append(
                    (e.aggregate_id, e.step_id, e.attempt, e.workspace_id, call.tool, e.occurred_at)
                )
            if isinstance(e, c.StepSucceeded):
                key = (e.aggregate_id, e.step_id, e.attempt)
                u = usage_of(e.output)
                usage = (u.total, u.model, u.input_tokens, u.output_tokens)
                closes.append(("succeeded", e.duration_ms, None, None, *usage, *key))
            elif isinstance(e, c.StepFailed):
                key = (e.aggregate_id, e.step_id, e.attempt)
                failed = (
                    "failed",
                    None,
                    plain_text(e.error[:2000]),
                    error_class(e.error),
                    0,
                    None,
                    0,
                    0,
                )
                closes.append((*failed, *key))
        with conn.cursor() as cur:
            # Opens first: a batch may hold an attempt's dispatch and its outcome.
            if opens:
                cur.executemany(SQL(_OPEN).format(s=self.s), opens)
            if closes:
                cur.executemany(SQL(_CLOSE).format(s=self.s), closes)

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL("TRUNCATE {s}.tool_attempts").format(s=self.s))
