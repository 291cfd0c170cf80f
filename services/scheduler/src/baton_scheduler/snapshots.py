"""Snapshots of the scheduler's objects: where a replica starts instead of the whole log.

Every tick of a schedule is an event, so the log of a per-second schedule grows by ~170,000
events a day. A snapshot is the objects as of a log position; a starting replica loads it and
follows the log from there. It is only ever a shortcut: the log stays the truth, and a snapshot
that is missing or unreadable means reading the log from the start.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

NAME = "scheduler"


class Snapshots:
    """One row in PostgreSQL: the newest snapshot any replica wrote."""

    def __init__(self, url: str, schema: str) -> None:
        self.url = url
        self.table = SQL("{}.{}").format(Identifier(schema), Identifier("scheduler_snapshots"))
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL,"
                    " state jsonb NOT NULL, taken_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.table)
            )

    def load(self) -> dict[str, Any] | None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                SQL("SELECT state FROM {} WHERE name = %s").format(self.table), (NAME,)
            ).fetchone()
        return dict(row[0]) if row else None

    def save(self, position: int, state: dict[str, Any]) -> None:
        """Keep the newer of this one and the stored one (replicas race harmlessly)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                SQL(
                    "INSERT INTO {t} (name, position, state) VALUES (%s, %s, %s) ON CONFLICT (name)"
                    " DO UPDATE SET position = EXCLUDED.position, state = EXCLUDED.state,"
                    " taken_at = now() WHERE {t}.position < EXCLUDED.position"
                ).format(t=self.table),
                (NAME, position, Jsonb(state)),
            )


class MemorySnapshots:
    """The same in memory (unit tests); a JSON round trip, as PostgreSQL would do."""

    def __init__(self) -> None:
        self.saved: str | None = None

    def load(self) -> dict[str, Any] | None:
        return json.loads(self.saved) if self.saved else None

    def save(self, position: int, state: dict[str, Any]) -> None:
        current = self.load()
        if current is None or current["position"] < position:
            self.saved = json.dumps(state)
