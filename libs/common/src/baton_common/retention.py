"""Retention: finished executions past their workspace's retention period are archived, then
removed from the event stores, the views and the inboxes, leaving a summary row.

One execution at a time, in steps that can each be run again: gather its history (every event
of it in every service's store, its projected history, its view and its gates), write it to the
archive under a deterministic key and read it back against its checksum, then remove it all in
one transaction that first checks nothing was added since it was gathered. A crash before that
transaction leaves the history where it was (the next sweep writes the same object again); a
crash inside it removes nothing. Every store lives in the installation's one database, which is
what lets one transaction take an execution out of all of them.

Running, paused and waiting executions are never chosen: only finished ones (succeeded, failed,
cancelled) whose last change is older than the retention period and with no gate still open.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from baton_common import archive as objects
from baton_common.archive import ArchiveError, ArchiveStore

log = logging.getLogger(__name__)

# The stores that hold events of an execution (aggregate id = the execution, or one of its gates).
EXECUTION_STORES = ("gateway", "planner", "executor")
GATE_STORE = "hitl"
TERMINAL = ("succeeded", "failed", "cancelled")
# View tables with rows per execution that are archived with it (the list row stays, summarised).
DETAIL_TABLES = ("approvals", "step_logs")
# Bookkeeping rows of the metrics of an execution, needed only while events of it may arrive.
BOOKKEEPING_TABLES = ("business_metric_plans", "business_metric_attempts")


class RetentionSettings(BaseSettings):
    """The installation's retention: the default period and the bounds a workspace's own
    ``retention_days`` is held within; how often the sweeper looks, and how many per look."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)
    days: float = Field(30.0, gt=0, alias="BATON_RETENTION_DAYS")
    min_days: float = Field(0.0, ge=0, alias="BATON_RETENTION_MIN_DAYS")
    max_days: float = Field(3650.0, gt=0, alias="BATON_RETENTION_MAX_DAYS")
    interval_s: float = Field(300.0, gt=0, alias="BATON_ARCHIVE_INTERVAL")
    batch: int = Field(200, ge=1, alias="BATON_ARCHIVE_BATCH")

    def problem(self, days: float | None) -> str | None:
        """Why a workspace may not set ``retention_days`` to ``days`` (None: it may)."""
        if days is None or self.min_days <= days <= self.max_days:
            return None
        return (
            f"retention_days: {days:g} is outside this installation's bounds "
            f"({self.min_days:g}…{self.max_days:g}, BATON_RETENTION_MIN_DAYS / _MAX_DAYS)"
        )


@dataclass
class Gathered:
    """Everything of one execution, as it is archived, and what the removal checks against."""

    execution_id: UUID
    workspace_id: str
    created_at: datetime
    view: dict[str, Any]
    lines: list[dict[str, Any]]
    event_ids: list[str]
    aggregate_ids: list[UUID]
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class Swept:
    archived: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


# --- choosing --------------------------------------------------------------------------------------

_CANDIDATES = """
SELECT x.id FROM {s}.executions x
  LEFT JOIN {s}.workspaces w ON w.id = x.workspace_id
  LEFT JOIN {s}.archived_executions a ON a.id = x.id
WHERE x.status = ANY(%(terminal)s) AND NOT x.view ? 'archived_at'
  AND GREATEST(x.updated_at, a.restored_at) < now() - make_interval(secs => 86400 *
      LEAST(GREATEST(COALESCE((w.policy->>'retention_days')::float8, %(days)s), %(lo)s), %(hi)s))
  AND NOT EXISTS (SELECT 1 FROM {s}.approvals g WHERE g.execution_id = x.id
                  AND g.status = 'pending')
ORDER BY x.updated_at LIMIT %(limit)s
"""


def expired(conn: psycopg.Connection[Any], schema: str, rs: RetentionSettings) -> list[UUID]:
    """Finished executions past their workspace's retention period, oldest first."""
    rows = conn.execute(
        SQL(_CANDIDATES).format(s=Identifier(schema)),
        {
            "terminal": list(TERMINAL),
            "days": rs.days,
            "lo": rs.min_days,
            "hi": rs.max_days,
            "limit": rs.batch,
        },
    ).fetchall()
    return [r["id"] for r in rows]


# --- gathering -------------------------------------------------------------------------------------


def store_tables(conn: psycopg.Connection[Any], schema: str, suffix: str) -> list[str]:
    """The tables of every service's store ending with ``suffix`` (``_events``, ``_inbox``)."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
        " AND table_name LIKE %s ORDER BY table_name",
        (schema, f"%\\{suffix}"),
    ).fetchall()
    return [r["table_name"] for r in rows]


def gather(conn: psycopg.Connection[Any], schema: str, execution_id: UUID) -> Gathered | None:
    s = Identifier(schema)
    row = conn.execute(
        SQL("SELECT workspace_id, created_at, view FROM {s}.executions WHERE id = %s").format(s=s),
        (execution_id,),
    ).fetchone()
    if row is None:
        return None
    gates = [
        r["id"]
        for r in conn.execute(
            SQL("SELECT id FROM {s}.approvals WHERE execution_id = %s ORDER BY id").format(s=s),
            (execution_id,),
        )
    ]
    lines: list[dict[str, Any]] = [
        {"kind": "execution", "format": objects.FORMAT, "execution_id": str(execution_id)}
        | {"workspace_id": row["workspace_id"], "view": row["view"]}
    ]
    event_ids: set[str] = set()
    counts: dict[str, int] = {}
    tables = set(store_tables(conn, schema, "_events"))
    for store in (*EXECUTION_STORES, GATE_STORE):
        table = f"{store}_events"
        if table not in tables:
            continue
        ids = gates if store == GATE_STORE else [execution_id]
        events = _store_events(conn, schema, table, ids)
        counts[table] = len(events)
        for e in events:
            event_ids.add(str(e["event"].get("event_id")))
            lines.append({"kind": "event", "store": store, **e})
    history = conn.execute(
        SQL(
            "SELECT seq, event_id, type, occurred_at, data FROM {s}.execution_events"
            " WHERE execution_id = %s ORDER BY seq"
        ).format(s=s),
        (execution_id,),
    ).fetchall()
    counts["execution_events"] = len(history)
    for h in history:
        event_ids.add(str(h["event_id"]))
        lines.append({"kind": "history", **h})
    for table in DETAIL_TABLES:
        rows = conn.execute(
            SQL("SELECT * FROM {s}.{t} WHERE execution_id = %s ORDER BY 1").format(
                s=s, t=Identifier(table)
            ),
            (execution_id,),
        ).fetchall()
        counts[table] = len(rows)
        lines += [{"kind": "row", "table": table, "row": r} for r in rows]
    return Gathered(
        execution_id,
        row["workspace_id"],
        row["created_at"],
        row["view"],
        lines,
        sorted(event_ids),
        [execution_id, *gates],
        counts,
    )


def _store_events(
    conn: psycopg.Connection[Any], schema: str, table: str, ids: Sequence[UUID]
) -> list[dict[str, Any]]:
    import json

    if not ids:
        return []
    rows = conn.execute(
        SQL(
            "SELECT originator_id, originator_version, topic, state FROM {s}.{t}"
            " WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(s=Identifier(schema), t=Identifier(table)),
        (list(ids),),
    ).fetchall()
    return [
        {
            "aggregate_id": str(r["originator_id"]),
            "version": r["originator_version"],
            "topic": r["topic"],
            "event": json.loads(bytes(r["state"])),
        }
        for r in rows
    ]


# --- archiving and removing ------------------------------------------------------------------------


def manifest(g: Gathered, key: str, data: bytes) -> dict[str, Any]:
    return {
        "format": objects.FORMAT,
        "execution_id": str(g.execution_id),
        "workspace_id": g.workspace_id,
        "status": g.view.get("status"),
        "created_at": g.created_at.isoformat(),
        "finished_at": g.view.get("finished_at"),
        "object": key.rsplit("/", 1)[-1],
        "sha256": objects.checksum(data),
        "bytes": len(data),
        "lines": len(g.lines),
        "counts": g.counts,
    }


def summary(view: dict[str, Any], key: str, at: datetime) -> dict[str, Any]:
    """What the list, the metrics and ``GET /v1/executions/{id}`` keep of an archived execution."""
    kept = {k: v for k, v in view.items() if k not in ("inputs", "outputs", "steps", "plan")}
    kept.pop("conflicts", None)
    plan = view.get("plan") or None
    if plan is not None:
        steps = [{"id": s.get("id"), "tool": s.get("tool")} for s in plan.get("steps", [])]
        kept["plan"] = {"name": plan.get("name"), "steps": steps}
    kept["steps"] = {
        sid: {k: st.get(k) for k in ("tool", "status", "attempts", "duration_ms")}
        for sid, st in (view.get("steps") or {}).items()
    }
    kept.pop("restored_at", None)
    return kept | {"archived_at": at.isoformat(), "archive": key}


def archive_one(
    conn: psycopg.Connection[Any], schema: str, archive: ArchiveStore, execution_id: UUID
) -> bool:
    """Archive and remove one expired execution; False when it changed meanwhile (next sweep)."""
    g = gather(conn, schema, execution_id)
    if g is None:
        return False
    known = _archived(conn, schema, execution_id)
    if known is not None:  # restored for a while: the archive is the history (not rewritten)
        key, sha = known["key"], known["sha256"]
        objects.read_verified(archive, key, sha)
        data_len, events = int(known["bytes"]), int(known["events"])
    else:
        key = objects.object_key(g.workspace_id, execution_id, g.created_at)
        data = objects.encode(g.lines)
        m = manifest(g, key, data)
        objects.write_verified(archive, key, data, m)
        sha, data_len, events = m["sha256"], len(data), g.counts.get("execution_events", 0)
    return _remove(conn, schema, g, (key, sha, data_len, events), fresh=known is None)


def _archived(conn: psycopg.Connection[Any], schema: str, execution_id: UUID) -> Any:
    return conn.execute(
        SQL("SELECT * FROM {s}.archived_executions WHERE id = %s").format(s=Identifier(schema)),
        (execution_id,),
    ).fetchone()


def _remove(
    conn: psycopg.Connection[Any],
    schema: str,
    g: Gathered,
    record: tuple[str, str, int, int],
    *,
    fresh: bool,
) -> bool:
    s = Identifier(schema)
    with conn.transaction():
        # The projector's lock order (projections.apply_batch), so neither waits on the other.
        conn.execute(
            SQL("LOCK TABLE {s}.executions, {s}.execution_events IN ROW EXCLUSIVE MODE").format(s=s)
        )
        row = conn.execute(
            SQL("SELECT status, view FROM {s}.executions WHERE id = %s FOR UPDATE").format(s=s),
            (g.execution_id,),
        ).fetchone()
        if row is None or row["status"] not in TERMINAL or "archived_at" in row["view"]:
            return False
        if fresh and _counts(conn, schema, g) != g.counts:
            return False  # something arrived after the archive was written: not removed
        _delete_history(conn, schema, g, stores=fresh)
        at = datetime.now(UTC)
        key, sha, size, events = record
        conn.execute(
            SQL("UPDATE {s}.executions SET view = %s WHERE id = %s").format(s=s),
            (Jsonb(summary(row["view"], key, at)), g.execution_id),
        )
        conn.execute(
            SQL(
                "INSERT INTO {s}.archived_executions (id, workspace_id, key, sha256, bytes, events,"
                " created_at, archived_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET archived_at = EXCLUDED.archived_at,"
                " restored_at = NULL"
            ).format(s=s),
            (g.execution_id, g.workspace_id, key, sha, size, events, g.created_at, at),
        )
    return True


def _counts(conn: psycopg.Connection[Any], schema: str, g: Gathered) -> dict[str, int]:
    s = Identifier(schema)
    counts: dict[str, int] = {}
    for table in g.counts:
        if table.endswith("_events") and table != "execution_events":
            where, arg = "originator_id = ANY(%s)", list(_ids_of(g, table))
        else:
            where, arg = "execution_id = %s", g.execution_id  # type: ignore[assignment]
        row = conn.execute(
            SQL("SELECT count(*) AS n FROM {s}.{t} WHERE " + where).format(
                s=s, t=Identifier(table)
            ),
            (arg,),
        ).fetchone()
        counts[table] = int(row["n"]) if row else 0
    return counts


def _ids_of(g: Gathered, table: str) -> list[UUID]:
    return g.aggregate_ids[1:] if table == f"{GATE_STORE}_events" else g.aggregate_ids[:1]


def _delete_history(
    conn: psycopg.Connection[Any], schema: str, g: Gathered, *, stores: bool
) -> None:
    s = Identifier(schema)
    if stores:
        for table in g.counts:
            if table.endswith("_events") and table != "execution_events":
                conn.execute(
                    SQL("DELETE FROM {s}.{t} WHERE originator_id = ANY(%s)").format(
                        s=s, t=Identifier(table)
                    ),
                    (_ids_of(g, table),),
                )
        for inbox in store_tables(conn, schema, "_inbox"):
            conn.execute(
                SQL("DELETE FROM {s}.{t} WHERE message_id = ANY(%s)").format(
                    s=s, t=Identifier(inbox)
                ),
                (g.event_ids,),
            )
    for table in ("execution_events", *DETAIL_TABLES, *BOOKKEEPING_TABLES):
        conn.execute(
            SQL("DELETE FROM {s}.{t} WHERE execution_id = %s").format(s=s, t=Identifier(table)),
            (g.execution_id,),
        )


def sweep(
    url: str, schema: str, archive: ArchiveStore, rs: RetentionSettings | None = None
) -> Swept:
    """Archive and remove every expired execution (a batch at a time) until none is left."""
    rs = rs or RetentionSettings()
    done = Swept()
    with connect(url) as conn:
        while batch := [i for i in expired(conn, schema, rs) if str(i) not in done.failed]:
            for execution_id in batch:
                try:
                    if archive_one(conn, schema, archive, execution_id):
                        done.archived += 1
                    else:
                        done.skipped += 1
                except (ArchiveError, OSError, psycopg.Error) as exc:
                    log.warning(
                        "archiving %s failed (kept, tried again later): %s", execution_id, exc
                    )
                    done.failed.append(str(execution_id))
            if done.skipped or len(batch) < rs.batch:
                break
    return done


# --- reading the past --------------------------------------------------------------------------------


def archived(conn: psycopg.Connection[Any], schema: str, execution_id: UUID) -> Any:
    """The archive record of an execution (key, checksum, when), or None."""
    return _archived(conn, schema, execution_id)


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
    record = _archived(conn, schema, execution_id)
    if record is None:
        raise ArchiveError(f"execution {execution_id} is not archived")
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


# --- deleting a workspace ----------------------------------------------------------------------------


class WorkspaceBusy(RuntimeError):
    """A workspace with executions still in flight is not deleted (cancel them first)."""


def _in_flight(conn: psycopg.Connection[Any], schema: str, workspace_id: str) -> int:
    row = conn.execute(
        SQL(
            "SELECT count(*) AS n FROM {s}.executions WHERE workspace_id = %s AND status <> ALL(%s)"
        ).format(s=Identifier(schema)),
        (workspace_id, list(TERMINAL)),
    ).fetchone()
    return int(row["n"]) if row else 0


def _tables_with(conn: psycopg.Connection[Any], schema: str, column: str) -> list[str]:
    rows = conn.execute(
        "SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t"
        " USING (table_schema, table_name) WHERE c.table_schema = %s AND c.column_name = %s"
        " AND t.table_type = 'BASE TABLE' ORDER BY c.table_name",
        (schema, column),
    ).fetchall()
    return [r["table_name"] for r in rows]


def delete_workspace(
    conn: psycopg.Connection[Any], schema: str, archive: ArchiveStore, workspace_id: str
) -> dict[str, int]:
    """Remove everything of a workspace: its events in every store (and the inbox rows of
    them), every read model row, and its archives. Returns what was removed, by table.

    The archives go first: a crash after them leaves the workspace in place, and deleting it
    again finishes the job; the database's part is one transaction."""
    if n := _in_flight(conn, schema, workspace_id):
        raise WorkspaceBusy(
            f"workspace {workspace_id!r} has {n} executions in flight: cancel them first"
        )
    removed: dict[str, int] = {"archive objects": archive.delete_prefix(f"{workspace_id}/")}
    s = Identifier(schema)
    with conn.transaction():
        if n := _in_flight(conn, schema, workspace_id):  # one started meanwhile
            raise WorkspaceBusy(f"workspace {workspace_id!r} has {n} executions in flight")
        executions = [
            r["id"]
            for r in conn.execute(
                SQL("SELECT id FROM {s}.executions WHERE workspace_id = %s").format(s=s),
                (workspace_id,),
            )
        ]
        event_ids: list[str] = []
        for table in _tables_with(conn, schema, "originator_id"):  # every service's store
            rows = conn.execute(
                SQL(
                    "DELETE FROM {s}.{t} WHERE convert_from(state, 'UTF8')::json->>'workspace_id'"
                    " = %s RETURNING convert_from(state, 'UTF8')::json->>'event_id' AS id"
                ).format(s=s, t=Identifier(table)),
                (workspace_id,),
            ).fetchall()
            removed[table] = len(rows)
            event_ids += [r["id"] for r in rows]
        for inbox in store_tables(conn, schema, "_inbox"):
            removed[inbox] = _deleted(conn, schema, inbox, "message_id = ANY(%s)", event_ids)
        by_workspace = set(_tables_with(conn, schema, "workspace_id"))
        for table in _tables_with(conn, schema, "execution_id"):
            if table not in by_workspace:  # e.g. an execution's history, metrics bookkeeping
                removed[table] = _deleted(conn, schema, table, "execution_id = ANY(%s)", executions)
        for table in sorted(by_workspace):
            removed[table] = _deleted(conn, schema, table, "workspace_id = %s", workspace_id)
        for table in _tables_with(conn, schema, "workspace"):  # the executor's result cache
            removed[table] = _deleted(conn, schema, table, "workspace = %s", workspace_id)
        removed["workspaces"] = _deleted(conn, schema, "workspaces", "id = %s", workspace_id)
    return {k: v for k, v in sorted(removed.items()) if v}


def _deleted(conn: psycopg.Connection[Any], schema: str, table: str, where: str, arg: Any) -> int:
    cursor = conn.execute(
        SQL("DELETE FROM {s}.{t} WHERE " + where).format(s=Identifier(schema), t=Identifier(table)),
        (arg,),
    )
    return cursor.rowcount


# --- one handle for the gateway and the CLI ---------------------------------------------------------


@dataclass
class Archives:
    """The installation's archive and database, for the routes that read and change them."""

    url: str
    schema: str
    store: ArchiveStore

    def record(self, execution_id: UUID) -> dict[str, Any] | None:
        with connect(self.url) as conn:
            found: dict[str, Any] | None = archived(conn, self.schema, execution_id)
            return found

    def history(self, execution_id: UUID) -> list[dict[str, Any]]:
        record = self.record(execution_id)
        return history(self.store, record) if record else []

    def lines(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return objects.read_verified(self.store, record["key"], record["sha256"])

    def manifest(self, record: dict[str, Any]) -> dict[str, Any] | None:
        import json

        data = self.store.get(objects.manifest_key(record["key"]))
        return json.loads(data) if data else None

    def restore(self, execution_id: UUID) -> dict[str, Any]:
        with connect(self.url) as conn:
            return restore(conn, self.schema, self.store, execution_id)

    def sweep(self, rs: RetentionSettings | None = None) -> Swept:
        return sweep(self.url, self.schema, self.store, rs)

    def delete_workspace(self, workspace_id: str) -> dict[str, int]:
        with connect(self.url) as conn:
            return delete_workspace(conn, self.schema, self.store, workspace_id)
