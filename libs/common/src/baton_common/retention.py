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

# The statuses written out (TERMINAL), so the partial index executions_expiry_idx serves it.
_CANDIDATES = """
SELECT x.id FROM {s}.executions x
  LEFT JOIN {s}.workspaces w ON w.id = x.workspace_id
  LEFT JOIN {s}.archived_executions a ON a.id = x.id
WHERE x.status IN ('succeeded', 'failed', 'cancelled') AND NOT x.view ? 'archived_at'
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


def _rows(
    conn: psycopg.Connection[Any], schema: str, statement: str, *params: Any, table: str = ""
) -> list[dict[str, Any]]:
    query = SQL(statement).format(s=Identifier(schema), t=Identifier(table or "-"))
    return conn.execute(query, params).fetchall()


def gather(conn: psycopg.Connection[Any], schema: str, execution_id: UUID) -> Gathered | None:
    found = _rows(
        conn,
        schema,
        "SELECT workspace_id, created_at, view FROM {s}.executions WHERE id = %s",
        execution_id,
    )
    if not found:
        return None
    row = found[0]
    gates = _rows(
        conn,
        schema,
        "SELECT id FROM {s}.approvals WHERE execution_id = %s ORDER BY id",
        execution_id,
    )
    head = {"kind": "execution", "format": objects.FORMAT, "execution_id": str(execution_id)}
    g = Gathered(
        execution_id,
        row["workspace_id"],
        row["created_at"],
        row["view"],
        [head | {"workspace_id": row["workspace_id"], "view": row["view"]}],
        [],
        [execution_id, *(r["id"] for r in gates)],
    )
    _gather_stores(conn, schema, g)
    _gather_views(conn, schema, g)
    g.event_ids = sorted(set(g.event_ids))
    return g


def _gather_stores(conn: psycopg.Connection[Any], schema: str, g: Gathered) -> None:
    """Its events in the services' stores: the execution's own aggregates, and its gates'."""
    tables = set(store_tables(conn, schema, "_events"))
    for store in (*EXECUTION_STORES, GATE_STORE):
        table = f"{store}_events"
        if table in tables:
            events = _store_events(conn, schema, table, _ids_of(g, table))
            g.counts[table] = len(events)
            g.event_ids += [str(e["event"].get("event_id")) for e in events]
            g.lines += [{"kind": "event", "store": store, **e} for e in events]


def _gather_views(conn: psycopg.Connection[Any], schema: str, g: Gathered) -> None:
    """Its projected history (what replay folds), and its rows of the detail views."""
    history = _rows(
        conn,
        schema,
        "SELECT seq, event_id, type, occurred_at, data FROM {s}.execution_events"
        " WHERE execution_id = %s ORDER BY seq",
        g.execution_id,
    )
    g.counts["execution_events"] = len(history)
    g.event_ids += [str(h["event_id"]) for h in history]
    g.lines += [{"kind": "history", **h} for h in history]
    for table in DETAIL_TABLES:
        rows = _rows(
            conn,
            schema,
            "SELECT * FROM {s}.{t} WHERE execution_id = %s ORDER BY 1",
            g.execution_id,
            table=table,
        )
        g.counts[table] = len(rows)
        g.lines += [{"kind": "row", "table": table, "row": r} for r in rows]


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
    known = record_of(conn, schema, execution_id)
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


def record_of(conn: psycopg.Connection[Any], schema: str, execution_id: UUID) -> Any:
    """The archive record of an execution (key, checksum, when, restored), or None."""
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
    # The metrics' record of its events already counted: none of them can arrive again (their
    # inbox rows go too), and without this every event ever counted keeps a row.
    conn.execute(
        SQL("DELETE FROM {s}.business_metric_events WHERE event_id = ANY(%s)").format(s=s),
        ([i for i in map(_uuid, g.event_ids) if i is not None],),
    )


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


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
