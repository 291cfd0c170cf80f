"""Snapshots of what a service folds from its whole log: where a replica starts instead of the
log's first position.

The scheduler's schedules and triggers, the planner's saved plans and the calendar service's
directory are folded in memory from their store's log, which grows for as long as the
installation lives. A snapshot is the fold as of a log position (one row per fold, the newest any
replica wrote); a starting replica loads it and follows the log from there, so a start reads at
most about ``BATON_SNAPSHOT_EVERY`` events (plus what arrived since the last look) however long
the history. It is only ever a shortcut: the log stays the truth, and a snapshot that is missing
or does not restore means reading the log from the start. Deleting a workspace deletes them all
(``erasure``): they hold every workspace's objects.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from baton_common.snapshots import Unsnapshottable

log = logging.getLogger(__name__)
TABLE = "start_snapshots"


class StartSnapshots:
    """The newest snapshot of one fold (``name``), one row in PostgreSQL."""

    def __init__(self, url: str, schema: str, name: str) -> None:
        self.url, self.name = url, name
        self.table = SQL("{}.{}").format(Identifier(schema), Identifier(TABLE))
        # Services start together: ``IF NOT EXISTS`` alone races (both creators see none, one
        # fails on the catalogue's unique index), so they take turns under the read models' lock.
        with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(77002)")
            conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint NOT NULL,"
                    " state jsonb NOT NULL, taken_at timestamptz NOT NULL DEFAULT now())"
                ).format(self.table)
            )

    def load(self) -> dict[str, Any] | None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(
                SQL("SELECT state FROM {} WHERE name = %s").format(self.table), (self.name,)
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
                (self.name, position, Jsonb(state)),
            )


class MemoryStartSnapshots:
    """The same in memory (unit tests); a JSON round trip, as PostgreSQL would do."""

    def __init__(self) -> None:
        self.saved: str | None = None

    def load(self) -> dict[str, Any] | None:
        return json.loads(self.saved) if self.saved else None

    def save(self, position: int, state: dict[str, Any]) -> None:
        current = self.load()
        if current is None or current["position"] < position:
            self.saved = json.dumps(state)


class StartsFromSnapshot:
    """A fold of a log that starts from its newest snapshot. The class gives ``refresh`` (follow
    the log past ``position``, counting the events in ``read``), ``_state`` (the fold as JSON,
    with ``position``, taken while it does not move) and ``_restore`` (the fold from such a
    state, replacing it whole or not at all)."""

    snapshots: StartSnapshots | MemoryStartSnapshots | None = None
    snapshot_every = 1_000
    snapshot_at = 0  # the position of the last snapshot taken or loaded
    position = 0
    read = 0  # events read from the log (a start from a snapshot reads few)

    def start(self) -> None:
        """The fold as of the newest snapshot (if one restores), then as of the log."""
        data = self.snapshots.load() if self.snapshots else None
        if data is not None:
            try:
                self._restore(data)
                self.position = self.snapshot_at = int(data["position"])
            except (Unsnapshottable, KeyError, ValueError, TypeError) as exc:
                log.warning("%s: snapshot passed over (%s)", type(self).__name__, exc)
        self.refresh()

    def snapshot(self, every: int | None = None) -> bool:
        """Save the fold when the log has moved ``every`` events (``snapshot_every``) past the
        last snapshot."""
        every = self.snapshot_every if every is None else every
        if self.snapshots is None or self.position - self.snapshot_at < every:
            return False
        state = self._state()
        self.snapshots.save(int(state["position"]), state)
        self.snapshot_at = int(state["position"])
        return True

    def refresh(self) -> None:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _restore(self, data: dict[str, Any]) -> None:
        raise NotImplementedError
