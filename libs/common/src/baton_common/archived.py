"""Reading the past: an archived execution's history (what replay folds), a restore into the
read models for debugging, and the one handle the gateway and the CLI use for all of it
(the sweep of ``retention`` and the workspace deletion of ``erasure`` included)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

from baton_common import archive as objects
from baton_common import auditarchive
from baton_common.archive import ArchiveError, ArchiveStore
from baton_common.erasure import delete_workspace
from baton_common.retention import (
    BOOKKEEPING_TABLES,
    DETAIL_TABLES,
    RetentionSettings,
    Swept,
    connect,
    find_folded,
    record_of,
    summary,
    sweep,
)
from baton_common.workspaces import DEFAULT_WORKSPACE


class SummaryFolded(ValueError):
    """An execution whose summary row was folded into per-day counts: it is not restored (it
    would be counted twice); its history is still read from the archive."""


def history(archive: ArchiveStore, record: dict[str, Any]) -> list[dict[str, Any]]:
    """An archived execution's projected history (what replay folds), in order."""
    lines = objects.read_verified(archive, record["key"], record["sha256"])
    rows = [line for line in lines if line["kind"] == "history"]
    for r in rows:
        r["event_id"] = UUID(r["event_id"])
        r["occurred_at"] = datetime.fromisoformat(r["occurred_at"])
    return rows


def restore(
    conn: psycopg.Connection[Any], schema: str, archive: ArchiveStore, execution_id: UUID
) -> dict[str, Any]:
    """Bring an archived history back into the read models (view, history, gates, logs) for
    debugging. The services' stores are left as they are: nothing of it runs again. It stays
    back for one retention period, then the sweeper removes it again (not rewriting the archive)."""
    record = record_of(conn, schema, execution_id)
    if record is None:
        raise ArchiveError(f"execution {execution_id} is not archived")
    if record["folded_at"] is not None:
        raise SummaryFolded(
            f"execution {execution_id} is past the summary period (BATON_SUMMARY_RETENTION_DAYS)"
            ": it is counted by day and not restored; read it with `baton archive show --lines`"
        )
    lines = objects.read_verified(archive, record["key"], record["sha256"])
    s = Identifier(schema)
    now = datetime.now(UTC)
    with conn.transaction():
        view = lines[0]["view"] | {"restored_at": now.isoformat()}
        conn.execute(
            SQL("UPDATE {s}.executions SET view = %s WHERE id = %s").format(s=s),
            (Jsonb(view), execution_id),
        )
        for line in lines[1:]:
            if line["kind"] == "history":
                row = {k: v for k, v in line.items() if k != "kind"}
                row["execution_id"] = execution_id
                _insert(conn, schema, "execution_events", row, ())
            elif line["kind"] == "row":
                _insert(conn, schema, line["table"], line["row"], ("view",))
        conn.execute(
            SQL("UPDATE {s}.archived_executions SET restored_at = %s WHERE id = %s").format(s=s),
            (now, execution_id),
        )
    return {"id": str(execution_id), "restored_at": now.isoformat(), "key": record["key"]}


def _insert(
    conn: psycopg.Connection[Any],
    schema: str,
    table: str,
    row: dict[str, Any],
    jsonb: Sequence[str],
) -> None:
    values = [
        Jsonb(v) if (k in jsonb or k == "data") and v is not None else v for k, v in row.items()
    ]
    conn.execute(
        SQL("INSERT INTO {s}.{t} ({cols}) VALUES ({vals}) ON CONFLICT DO NOTHING").format(
            s=Identifier(schema),
            t=Identifier(table),
            cols=SQL(", ").join(Identifier(k) for k in row),
            vals=SQL(", ").join(SQL("%s") for _ in row),
        ),
        values,
    )


def resummarise(conn: psycopg.Connection[Any], schema: str, archive: ArchiveStore) -> int:
    """After the views were rebuilt from the stream: every archived execution (not restored)
    is its summary row again, whether the stream still held its events (a full view came back)
    or not (no row came back; the summary is made from the archive). How many were redone."""
    s = Identifier(schema)
    cur = conn.cursor(row_factory=dict_row)
    records = cur.execute(
        SQL(
            "SELECT a.*, x.view FROM {s}.archived_executions a LEFT JOIN {s}.executions x"
            " ON x.id = a.id WHERE a.restored_at IS NULL AND a.folded_at IS NULL"
            " AND (x.id IS NULL OR NOT x.view ? 'archived_at')"
        ).format(s=s)
    ).fetchall()
    for r in records:
        view = r["view"] or objects.read_verified(archive, r["key"], r["sha256"])[0]["view"]
        kept = summary(view, r["key"], r["archived_at"])
        cur.execute(
            SQL(
                "INSERT INTO {s}.executions (id, workspace_id, status, request, idempotency_key,"
                " created_at, updated_at, view) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET view = EXCLUDED.view"
            ).format(s=s),
            (
                r["id"],
                r["workspace_id"],
                view["status"],
                view.get("request"),
                view.get("idempotency_key"),
                view["created_at"],
                view["updated_at"],
                Jsonb(kept),
            ),
        )
        for table in ("execution_events", *DETAIL_TABLES, *BOOKKEEPING_TABLES):
            cur.execute(
                SQL("DELETE FROM {s}.{t} WHERE execution_id = %s").format(s=s, t=Identifier(table)),
                (r["id"],),
            )
    return len(records)


@dataclass
class Archives:
    """The installation's archive and database, for the routes that read and change them."""

    url: str
    schema: str
    store: ArchiveStore

    def record(self, execution_id: UUID, workspace_id: str | None = None) -> dict[str, Any] | None:
        """Its archive record; once its summary is folded (the record gone), what the
        workspace's day index holds of it (``workspace_id`` given)."""
        with connect(self.url) as conn:
            found: dict[str, Any] | None = record_of(conn, self.schema, execution_id)
        if found is None and workspace_id is not None:
            found = self.folded(workspace_id, execution_id)
        return found

    def folded(self, workspace_id: str, execution_id: UUID) -> dict[str, Any] | None:
        """A folded execution's record, from the workspace's day index in the archive."""
        found: dict[str, Any] | None = find_folded(self.store, workspace_id, execution_id)
        return found

    def folded_view(self, workspace_id: str, execution_id: UUID) -> dict[str, Any] | None:
        """A folded execution's summary (``GET /v1/executions/{id}``), made again from its
        archived history's first line (its view), marked ``folded_at``; or None."""
        record = self.folded(workspace_id, execution_id)
        if record is None:
            return None
        view = self.lines(record)[0]["view"]
        kept = summary(view, record["key"], record["archived_at"])
        return kept | {"folded_at": record["folded_at"].isoformat()}

    def history(self, execution_id: UUID, workspace_id: str | None = None) -> list[dict[str, Any]]:
        record = self.record(execution_id, workspace_id)
        return history(self.store, record) if record else []

    def history_anywhere(self, execution_id: UUID) -> list[dict[str, Any]]:
        """Its archived history for a reader of the stores themselves (``baton replay
        --from-store``), who has no workspace to look in: found by its record, or once that is
        folded, in each workspace's day index in turn (the default workspace first)."""
        found = self.history(execution_id)
        if found:
            return found
        with connect(self.url) as conn:
            rows = conn.execute(
                SQL("SELECT id FROM {s}.workspaces ORDER BY created_at").format(
                    s=Identifier(self.schema)
                )
            ).fetchall()
        ids = [str(row["id"]) for row in rows]
        for workspace_id in [DEFAULT_WORKSPACE, *(i for i in ids if i != DEFAULT_WORKSPACE)]:
            found = self.history(execution_id, workspace_id)
            if found:
                return found
        return []

    def lines(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return objects.read_verified(self.store, record["key"], record["sha256"])

    def manifest(self, record: dict[str, Any]) -> dict[str, Any] | None:
        import json

        data = self.store.get(objects.manifest_key(record["key"]))
        return json.loads(data) if data else None

    def restore(self, execution_id: UUID) -> dict[str, Any]:
        with connect(self.url) as conn:
            return restore(conn, self.schema, self.store, execution_id)

    def audit_days(self, workspace_id: str) -> list[dict[str, Any]]:
        with connect(self.url) as conn:
            return auditarchive.days(conn, self.schema, workspace_id)

    def audit_day(
        self, workspace_id: str, day: date, actor: str | None = None
    ) -> list[dict[str, Any]] | None:
        with connect(self.url) as conn:
            return auditarchive.read_day(conn, self.schema, self.store, workspace_id, day, actor)

    def sweep(self, rs: RetentionSettings | None = None) -> Swept:
        return sweep(self.url, self.schema, self.store, rs)

    def delete_workspace(self, workspace_id: str) -> dict[str, int]:
        with connect(self.url) as conn:
            return delete_workspace(conn, self.schema, self.store, workspace_id)
