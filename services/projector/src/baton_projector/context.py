"""The workspace's shared context as the gateway reads it: one row per key (``workspace_context``).

Each ``context.written`` / ``context.deleted`` replaces the row only when its version is newer,
so a redelivered or repeated event changes nothing; a delete keeps the row, marked, so an older
write folded after it cannot bring the value back. A rebuild truncates and folds the stream again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from baton_common import contracts as c
from baton_common.events import Event
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

_UPSERT = """INSERT INTO {s}.workspace_context AS w (workspace_id, key, value, version, written_by,
    execution_id, deleted, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (workspace_id, key) DO UPDATE SET value = excluded.value,
    version = excluded.version, written_by = excluded.written_by,
    execution_id = excluded.execution_id, deleted = excluded.deleted,
    updated_at = excluded.updated_at WHERE w.version < excluded.version"""


class WorkspaceContextProjection:
    """Folds the workspace keys' events into ``workspace_context``."""

    def __init__(self, schema: str) -> None:
        self.s = Identifier(schema)

    def apply_batch(self, conn: psycopg.Connection[Any], events: Sequence[Event]) -> None:
        rows = [_row(e) for e in events if isinstance(e, _KEY_EVENTS)]
        if rows:
            with conn.cursor() as cur:
                cur.executemany(SQL(_UPSERT).format(s=self.s), rows)

    def truncate(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(SQL("TRUNCATE {s}.workspace_context").format(s=self.s))


_KEY_EVENTS = (c.WorkspaceContextWritten, c.WorkspaceContextDeleted)


def _row(e: c.WorkspaceContextWritten | c.WorkspaceContextDeleted) -> tuple[Any, ...]:
    deleted = isinstance(e, c.WorkspaceContextDeleted)
    value = None if deleted else Jsonb(e.value)  # type: ignore[union-attr]
    return (e.workspace_id, e.key, value, e.version, e.written_by, e.execution_id, deleted,
            e.occurred_at)  # fmt: skip
