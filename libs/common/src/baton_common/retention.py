"""Retention: finished executions past their workspace's retention period are archived, then
removed from the event stores, the views and the inboxes, leaving a summary row.

A batch of executions at a time (``BATON_ARCHIVE_BATCH``), in steps that can each be run again:
gather their histories (every event of them in every service's store, their projected
histories, views and gates: a query per table for the whole batch), write each to the archive
under a deterministic key and read it back against its checksum, then remove the whole batch in
one transaction that first checks, per execution, that nothing was added since it was gathered
(one that changed is left for the next sweep). A crash before that transaction leaves every
history of the batch where it was (the next sweep writes the same objects again); a crash inside
it removes nothing. Every store lives in the installation's one database, which is what lets
one transaction take executions out of all of them.

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

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb, set_json_loads
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from baton_common import archive as objects
from baton_common.archive import ArchiveError, ArchiveStore
from baton_common.auditarchive import sweep_audit

log = logging.getLogger(__name__)

# The stores that hold events of an execution (aggregate id = the execution, or one of its gates).
EXECUTION_STORES = ("gateway", "planner", "executor")
GATE_STORE = "hitl"
TERMINAL = ("succeeded", "failed", "cancelled")
# The sweep's advisory lock (with the schema's hash): one sweep of an installation at a time.
SWEEP_LOCK = 33
# View tables with rows per execution that are archived with it (the list row stays, summarised).
DETAIL_TABLES = ("approvals", "step_logs", "tool_attempts")
# Bookkeeping rows of the metrics of an execution, needed only while events of it may arrive.
BOOKKEEPING_TABLES = ("business_metric_plans", "business_metric_attempts")


class RetentionSettings(BaseSettings):
    """The installation's retention: the default period and the bounds a workspace's own
    ``retention_days`` is held within; how often the sweeper looks, and how many executions it
    archives per transaction."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)
    days: float = Field(30.0, gt=0, alias="BATON_RETENTION_DAYS")
    min_days: float = Field(0.0, ge=0, alias="BATON_RETENTION_MIN_DAYS")
    max_days: float = Field(3650.0, gt=0, alias="BATON_RETENTION_MAX_DAYS")
    interval_s: float = Field(300.0, gt=0, alias="BATON_ARCHIVE_INTERVAL")
    batch: int = Field(100, ge=1, alias="BATON_ARCHIVE_BATCH")
    # After this (counted as the retention period is), an archived execution's summary row is
    # folded into its workspace's counts per day, status and plan (``fold_summaries``).
    summary_days: float = Field(365.0, gt=0, alias="BATON_SUMMARY_RETENTION_DAYS")
    # After this (counted from when it happened), an audit row is archived and removed
    # (``auditarchive``): a security record, so a year by default.
    audit_days: float = Field(365.0, gt=0, alias="BATON_AUDIT_RETENTION_DAYS")

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
    record: tuple[str, str, int, int] | None = None  # its archive: key, sha256, bytes, events
    fresh: bool = True  # its events are in the stores (False: restored, the archive holds them)


@dataclass
class Swept:
    archived: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    folded: int = 0  # summary rows folded into per-day counts
    audit: int = 0  # audit rows archived and removed
    leftovers: int = 0  # temporary files of a write killed half-way, removed


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
    set_json_loads(objects.loads, conn)  # histories are mostly JSON: parsed ~5x faster
    return conn


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


def gather(
    conn: psycopg.Connection[Any], schema: str, execution_ids: Sequence[UUID]
) -> list[Gathered]:
    """Everything of each of ``execution_ids`` (those still in the views), a query per table for
    them all: each execution's lines in the order a single one's were always written."""
    found = _rows(
        conn,
        schema,
        "SELECT id, workspace_id, created_at, view FROM {s}.executions WHERE id = ANY(%s)"
        " ORDER BY id",
        list(execution_ids),
    )
    gates = _rows(
        conn,
        schema,
        "SELECT id, execution_id FROM {s}.approvals WHERE execution_id = ANY(%s) ORDER BY id",
        [r["id"] for r in found],
    )
    batch: dict[UUID, Gathered] = {}
    for row in found:
        head = {"kind": "execution", "format": objects.FORMAT, "execution_id": str(row["id"])}
        view = head | {"workspace_id": row["workspace_id"], "view": row["view"]}
        batch[row["id"]] = Gathered(
            row["id"], row["workspace_id"], row["created_at"], row["view"], [view], [], [row["id"]]
        )
    for gate in gates:
        batch[gate["execution_id"]].aggregate_ids.append(gate["id"])
    _gather_stores(conn, schema, batch)
    _gather_views(conn, schema, batch)
    for g in batch.values():
        g.event_ids = sorted(set(g.event_ids))
    return list(batch.values())


def _gather_stores(conn: psycopg.Connection[Any], schema: str, batch: dict[UUID, Gathered]) -> None:
    """Their events in the services' stores: the executions' own aggregates, and their gates'."""
    tables = set(store_tables(conn, schema, "_events"))
    for store in (*EXECUTION_STORES, GATE_STORE):
        table = f"{store}_events"
        if table not in tables:
            continue
        owner = {a: g for g in batch.values() for a in _ids_of(g, table)}
        for g in batch.values():
            g.counts[table] = 0
        for e in _store_events(conn, schema, table, list(owner)):
            g = owner[UUID(e["aggregate_id"])]
            g.counts[table] += 1
            g.event_ids.append(str(e["event"].get("event_id")))
            g.lines.append({"kind": "event", "store": store, **e})


def _gather_views(conn: psycopg.Connection[Any], schema: str, batch: dict[UUID, Gathered]) -> None:
    """Their projected histories (what replay folds), and their rows of the detail views."""
    ids = list(batch)
    history = _rows(
        conn,
        schema,
        "SELECT execution_id, seq, event_id, type, occurred_at, data FROM {s}.execution_events"
        " WHERE execution_id = ANY(%s) ORDER BY execution_id, seq",
        ids,
    )
    for g in batch.values():
        g.counts["execution_events"] = 0
    for h in history:
        g = batch[h.pop("execution_id")]
        g.counts["execution_events"] += 1
        g.event_ids.append(str(h["event_id"]))
        g.lines.append({"kind": "history", **h})
    for table in DETAIL_TABLES:
        rows = _rows(
            conn,
            schema,
            "SELECT * FROM {s}.{t} WHERE execution_id = ANY(%s) ORDER BY execution_id, 1, 2, 3",
            ids,
            table=table,
        )
        for g in batch.values():
            g.counts[table] = 0
        for r in rows:
            g = batch[r["execution_id"]]
            g.counts[table] += 1
            g.lines.append({"kind": "row", "table": table, "row": r})


def _store_events(
    conn: psycopg.Connection[Any], schema: str, table: str, ids: Sequence[UUID]
) -> list[dict[str, Any]]:
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
            "event": objects.loads(bytes(r["state"])),
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


def archive_batch(
    conn: psycopg.Connection[Any],
    schema: str,
    archive: ArchiveStore,
    execution_ids: Sequence[UUID],
) -> int:
    """Archive and remove a batch of expired executions: every object written and verified, then
    one transaction removes them all. How many were removed; the others changed meanwhile (or
    went), and the next sweep looks at them again."""
    batch = gather(conn, schema, execution_ids)
    known = records_of(conn, schema, [g.execution_id for g in batch])
    fresh: list[tuple[str, bytes, dict[str, Any]]] = []
    for g in batch:
        if (r := known.get(g.execution_id)) is not None:
            # restored for a while: the archive is the history (not rewritten)
            objects.read_verified(archive, r["key"], r["sha256"])
            g.record, g.fresh = (r["key"], r["sha256"], int(r["bytes"]), int(r["events"])), False
            continue
        key = objects.object_key(g.workspace_id, g.execution_id, g.created_at)
        data = objects.encode(g.lines)
        m = manifest(g, key, data)
        fresh.append((key, data, m))
        g.record = (key, m["sha256"], len(data), g.counts.get("execution_events", 0))
    objects.write_all(archive, fresh)
    return _remove(conn, schema, batch)


def record_of(conn: psycopg.Connection[Any], schema: str, execution_id: UUID) -> Any:
    """The archive record of an execution (key, checksum, when, restored), or None."""
    return records_of(conn, schema, [execution_id]).get(execution_id)


def records_of(
    conn: psycopg.Connection[Any], schema: str, execution_ids: list[UUID]
) -> dict[UUID, Any]:
    """The archive records of those of ``execution_ids`` that have one."""
    rows = _rows(
        conn, schema, "SELECT * FROM {s}.archived_executions WHERE id = ANY(%s)", execution_ids
    )
    return {r["id"]: r for r in rows}


def _remove(conn: psycopg.Connection[Any], schema: str, batch: list[Gathered]) -> int:
    s = Identifier(schema)
    with conn.transaction():
        # The projector's lock order (projections.apply_batch), so neither waits on the other.
        conn.execute(
            SQL("LOCK TABLE {s}.executions, {s}.execution_events IN ROW EXCLUSIVE MODE").format(s=s)
        )
        rows = conn.execute(
            SQL(
                "SELECT id, status, view FROM {s}.executions WHERE id = ANY(%s)"
                " ORDER BY id FOR UPDATE"
            ).format(s=s),
            ([g.execution_id for g in batch],),
        ).fetchall()
        views = {
            r["id"]: r["view"]
            for r in rows
            if r["status"] in TERMINAL and "archived_at" not in r["view"]
        }
        batch = [g for g in batch if g.execution_id in views]
        changed = _changed(conn, schema, [g for g in batch if g.fresh])
        batch = [g for g in batch if g.execution_id not in changed]
        if not batch:
            return 0
        _delete_history(conn, schema, batch)
        _record(conn, schema, batch, views)
    return len(batch)


def _record(
    conn: psycopg.Connection[Any],
    schema: str,
    batch: list[Gathered],
    views: dict[UUID, dict[str, Any]],
) -> None:
    """Each view becomes its summary row, and where its archive is is recorded."""
    s = Identifier(schema)
    at = datetime.now(UTC)
    with conn.cursor() as cur:
        cur.executemany(
            SQL("UPDATE {s}.executions SET view = %s WHERE id = %s").format(s=s),
            [
                (Jsonb(summary(views[g.execution_id], g.record[0], at)), g.execution_id)
                for g in batch
                if g.record
            ],
        )
        cur.executemany(
            SQL(
                "INSERT INTO {s}.archived_executions (id, workspace_id, key, sha256, bytes, events,"
                " created_at, archived_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET archived_at = EXCLUDED.archived_at,"
                " restored_at = NULL"
            ).format(s=s),
            [
                (g.execution_id, g.workspace_id, *g.record, g.created_at, at)
                for g in batch
                if g.record
            ],
        )


def _changed(conn: psycopg.Connection[Any], schema: str, batch: list[Gathered]) -> set[UUID]:
    """The executions of ``batch`` with rows added or gone since they were gathered."""
    if not batch:
        return set()
    now: dict[UUID, dict[str, int]] = {g.execution_id: {} for g in batch}
    for table in batch[0].counts:
        if table.endswith("_events") and table != "execution_events":
            owner = {a: g.execution_id for g in batch for a in _ids_of(g, table)}
            column = "originator_id"
        else:
            owner = {g.execution_id: g.execution_id for g in batch}
            column = "execution_id"
        counted = conn.execute(
            SQL(
                "SELECT {c} AS id, count(*) AS n FROM {s}.{t} WHERE {c} = ANY(%s) GROUP BY 1"
            ).format(c=Identifier(column), s=Identifier(schema), t=Identifier(table)),
            (list(owner),),
        ).fetchall()
        for c in counted:
            found = now[owner[c["id"]]]
            found[table] = found.get(table, 0) + int(c["n"])
    return {
        g.execution_id
        for g in batch
        if any(now[g.execution_id].get(t, 0) != n for t, n in g.counts.items())
    }


def _ids_of(g: Gathered, table: str) -> list[UUID]:
    return g.aggregate_ids[1:] if table == f"{GATE_STORE}_events" else g.aggregate_ids[:1]


def _delete_history(conn: psycopg.Connection[Any], schema: str, batch: list[Gathered]) -> None:
    s = Identifier(schema)
    fresh = [g for g in batch if g.fresh]
    if fresh:
        for table in fresh[0].counts:
            if table.endswith("_events") and table != "execution_events":
                conn.execute(
                    SQL("DELETE FROM {s}.{t} WHERE originator_id = ANY(%s)").format(
                        s=s, t=Identifier(table)
                    ),
                    ([a for g in fresh for a in _ids_of(g, table)],),
                )
        for inbox in store_tables(conn, schema, "_inbox"):
            conn.execute(
                SQL("DELETE FROM {s}.{t} WHERE message_id = ANY(%s)").format(
                    s=s, t=Identifier(inbox)
                ),
                ([e for g in fresh for e in g.event_ids],),
            )
    ids = [g.execution_id for g in batch]
    for table in ("execution_events", *DETAIL_TABLES, *BOOKKEEPING_TABLES):
        conn.execute(
            SQL("DELETE FROM {s}.{t} WHERE execution_id = ANY(%s)").format(
                s=s, t=Identifier(table)
            ),
            (ids,),
        )
    # The metrics' record of their events already counted: none of them can arrive again (their
    # inbox rows go too), and without this every event ever counted keeps a row.
    conn.execute(
        SQL("DELETE FROM {s}.business_metric_events WHERE event_id = ANY(%s)").format(s=s),
        ([i for g in batch for i in map(_uuid, g.event_ids) if i is not None],),
    )


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


# Autovacuum of the tables the sweep deletes from, once 2% of a table is dead: PostgreSQL's
# default (20%) lets a table that holds one retention period of rows grow by a fifth before the
# space of deleted rows is reused, and a busy store table by far more between two vacuums.
VACUUM_OPTIONS = {"autovacuum_vacuum_scale_factor": "0.02", "autovacuum_vacuum_threshold": "1000"}


def swept_tables(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """The tables the sweep deletes from (or rewrites rows of)."""
    return [
        *store_tables(conn, schema, "_events"),
        *store_tables(conn, schema, "_inbox"),
        "executions",
        "execution_events",
        *DETAIL_TABLES,
        *BOOKKEEPING_TABLES,
        "business_metric_events",
        "audit",
    ]


def vacuum(conn: psycopg.Connection[Any], schema: str) -> None:
    """Vacuum the tables the sweep deleted from, once it has (``conn`` in autocommit). Deleted
    rows' space is reused only once a vacuum has recorded it as free, and autovacuum on a busy
    machine may come minutes apart: until then every insert extends the table, which then stays
    that large. Vacuumed after each sweep, a table holds about one retention period of rows plus
    a sweep interval's. Only the pages changed since the last vacuum are read (a few
    milliseconds each); a table autovacuum is working on is passed over (SKIP_LOCKED)."""
    names = [
        SQL("{s}.{t}").format(s=Identifier(schema), t=Identifier(t))
        for t in dict.fromkeys(swept_tables(conn, schema))
        if _exists(conn, schema, t)
    ]
    if names:
        conn.execute(SQL("VACUUM (SKIP_LOCKED) {}").format(SQL(", ").join(names)))


def _exists(conn: psycopg.Connection[Any], schema: str, table: str) -> bool:
    found = conn.execute(
        "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = %s AND c.relkind = 'r'",
        (schema, table),
    ).fetchone()
    return found is not None


def tune_vacuum(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Give every table the sweep deletes from ``VACUUM_OPTIONS`` where it has other ones; the
    tables changed (none, once done: it is kept in the catalogue)."""
    tables = swept_tables(conn, schema)
    rows = conn.execute(
        "SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n"
        " ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = ANY(%s)",
        (schema, tables),
    ).fetchall()
    wanted = {f"{k}={v}" for k, v in VACUUM_OPTIONS.items()}
    changed = [r["relname"] for r in rows if not wanted <= set(r["reloptions"] or ())]
    options = SQL(", ").join(SQL(f"{k} = {v}") for k, v in VACUUM_OPTIONS.items())
    for table in changed:
        conn.execute(
            SQL("ALTER TABLE {s}.{t} SET ({o})").format(
                s=Identifier(schema), t=Identifier(table), o=options
            )
        )
    return changed


def sweep(
    url: str, schema: str, archive: ArchiveStore, rs: RetentionSettings | None = None
) -> Swept:
    """Archive and remove every expired execution, ``BATON_ARCHIVE_BATCH`` at a time (one
    transaction each), until none is left."""
    rs = rs or RetentionSettings()
    done = Swept()
    with connect(url) as conn:
        # One sweep of an installation at a time (the projector's leader, `baton archive run`):
        # the other waits, then finds little left. The lock goes with the connection, so a
        # sweeper killed mid-sweep holds it no longer. Holding it, no other sweep is writing:
        # a temporary file left in the archive is a killed write's, and is removed.
        conn.execute("SELECT pg_advisory_lock(hashtext(%s), %s::int)", (schema, SWEEP_LOCK))
        done.leftovers = archive.clean()
        tune_vacuum(conn, schema)
        while batch := [i for i in expired(conn, schema, rs) if str(i) not in done.failed]:
            _sweep_batch(conn, schema, archive, batch, done)
            if done.skipped or len(batch) < rs.batch:
                break
        while folded := fold_summaries(conn, schema, rs, archive):
            done.folded += folded
            if folded < rs.batch * FOLD_BATCHES:
                break
        while moved := index_marked(conn, schema, rs, archive):
            if moved < rs.batch * FOLD_BATCHES:
                break
        try:
            done.audit = sweep_audit(conn, schema, archive, rs.audit_days, rs.batch)
        except (ArchiveError, OSError, psycopg.Error) as exc:
            log.warning("archiving the audit failed (kept, tried again later): %s", exc)
            done.failed.append("audit")
        if done.archived or done.folded or done.audit:
            try:
                vacuum(conn, schema)
            except psycopg.Error as exc:  # autovacuum does it later
                log.warning("vacuum after the sweep failed: %s", exc)
    return done


# Chosen first, so their records can be written to the archive's day index before they go.
_FOLDABLE = """
SELECT x.id, x.workspace_id, x.status, a.key, a.sha256, a.bytes, a.events, a.created_at,
       a.archived_at
  FROM {s}.executions x LEFT JOIN {s}.workspaces w ON w.id = x.workspace_id
  LEFT JOIN {s}.archived_executions a ON a.id = x.id
WHERE x.view ? 'archived_at' AND x.updated_at < now() - make_interval(secs => 86400
  * COALESCE((w.policy->>'summary_retention_days')::float8, %(days)s))
ORDER BY x.updated_at LIMIT %(limit)s
"""

# One statement, so one transaction: the rows go, their counts are added and their archive
# records removed (the day index in the archive finds them from then on), or none of it. Each
# row is checked again under its lock: a restored execution (its view has no ``archived_at``
# until archived again) is not taken.
_FOLD = """
WITH gone AS (
  DELETE FROM {s}.executions WHERE id IN (
    SELECT x.id FROM {s}.executions x LEFT JOIN {s}.workspaces w ON w.id = x.workspace_id
    WHERE x.id = ANY(%(ids)s) AND x.view ? 'archived_at'
      AND x.updated_at < now() - make_interval(secs => 86400
      * COALESCE((w.policy->>'summary_retention_days')::float8, %(days)s))
    FOR UPDATE OF x SKIP LOCKED)
  RETURNING id, workspace_id, created_at, status, view
), unrecorded AS (
  DELETE FROM {s}.archived_executions a USING gone WHERE a.id = gone.id
), folded AS (
  INSERT INTO {s}.execution_day_counts AS d (workspace_id, day, status, plan, count, duration_ms)
  SELECT workspace_id, (created_at AT TIME ZONE 'UTC')::date, status,
         COALESCE(view->'plan'->>'name', ''), count(*),
         COALESCE(sum(extract(epoch FROM (view->>'finished_at')::timestamptz - created_at)), 0)
           * 1000
    FROM gone GROUP BY 1, 2, 3, 4
  ON CONFLICT (workspace_id, day, status, plan) DO UPDATE
    SET count = d.count + EXCLUDED.count, duration_ms = d.duration_ms + EXCLUDED.duration_ms
)
SELECT count(*) AS n FROM gone
"""

# Summaries folded per statement: ten batches, so a day's index has a part per thousand.
FOLD_BATCHES = 10


def fold_summaries(
    conn: psycopg.Connection[Any],
    schema: str,
    rs: RetentionSettings,
    archive: ArchiveStore,
) -> int:
    """Fold up to ten batches of archived executions' summary rows older than the summary
    period (the workspace's ``summary_retention_days``, else the installation's) into per-day
    counts (workspace, day created, status, plan name: how many, their durations' sum) and
    remove them and their archive records. Their records are first written to the archive's
    day index (``index_key``), read back, so an execution is found from its id without them
    (``find_folded``): a crash before the fold leaves the records (an index part naming them is
    harmless), a crash inside it changes nothing. How many."""
    s = Identifier(schema)
    params = {"days": rs.summary_days, "limit": rs.batch * FOLD_BATCHES}
    chosen = conn.execute(SQL(_FOLDABLE).format(s=s), params).fetchall()
    if not chosen:
        return 0
    write_index(archive, [r for r in chosen if r["key"] is not None])
    ids = [r["id"] for r in chosen]
    row = conn.execute(SQL(_FOLD).format(s=s), params | {"ids": ids}).fetchone()
    return int(row["n"]) if row else 0


def index_marked(
    conn: psycopg.Connection[Any], schema: str, rs: RetentionSettings, archive: ArchiveStore
) -> int:
    """Records a sweep before the day index kept, marked ``folded_at`` (their summaries are
    gone): written to the index, read back, then removed. How many (up to ten batches)."""
    s = Identifier(schema)
    chosen = conn.execute(
        SQL(
            "SELECT id, workspace_id, NULL AS status, key, sha256, bytes, events, created_at,"
            " archived_at FROM {s}.archived_executions WHERE folded_at IS NOT NULL LIMIT %s"
        ).format(s=s),
        (rs.batch * FOLD_BATCHES,),
    ).fetchall()
    if not chosen:
        return 0
    write_index(archive, chosen)
    ids = [r["id"] for r in chosen]
    conn.execute(SQL("DELETE FROM {s}.archived_executions WHERE id = ANY(%s)").format(s=s), (ids,))
    return len(chosen)


# --- the archive's day index: where a folded execution is found --------------------------------

INDEX = "index"


def index_key(workspace_id: str, day: Any, ids: Sequence[str]) -> str:
    """A part of a workspace's day index: named by what it holds (the same records, the same
    key), under ``<workspace>/index/<YYYY>/<MM>/<DD>/`` (the day they were created)."""
    digest = objects.checksum("\n".join(sorted(ids)).encode())[:20]
    return f"{workspace_id}/{INDEX}/{day:%Y/%m/%d}/{digest}.json"


def write_index(archive: ArchiveStore, records: Sequence[dict[str, Any]]) -> None:
    """Write the archive records of ``records`` as parts of their workspaces' day indexes
    (one part per workspace and day created), then read each back."""
    parts: dict[tuple[str, Any], dict[str, Any]] = {}
    for r in records:
        part = parts.setdefault((r["workspace_id"], r["created_at"].astimezone(UTC).date()), {})
        part[str(r["id"])] = {
            "object": r["key"],
            "sha256": r["sha256"],
            "bytes": int(r["bytes"]),
            "events": int(r["events"]),
            "status": r["status"],
            "created_at": r["created_at"].isoformat(),
            "archived_at": r["archived_at"].isoformat(),
        }
    folded = datetime.now(UTC).isoformat()
    written: dict[str, bytes] = {}
    for (ws, day), held in parts.items():
        body = {"format": objects.FORMAT, "workspace_id": ws, "day": day.isoformat()}
        doc = body | {"folded_at": folded, "executions": held}
        written[index_key(ws, day, list(held))] = orjson.dumps(doc)
    archive.put_many(written)
    for key, data in written.items():
        if archive.get(key) != data:
            raise ArchiveError(f"archive index {key} did not read back as written")


def find_folded(archive: ArchiveStore, workspace_id: str, execution_id: UUID) -> Any:
    """The archive record of a folded execution of the workspace, from its day index (newest day
    first; every part of a day is read), or None. Slow: for executions past the summary period."""
    wanted = str(execution_id)
    for key in reversed(archive.keys(f"{workspace_id}/{INDEX}/")):
        data = archive.get(key)
        if data is None or not key.endswith(".json"):
            continue
        try:
            part = objects.loads(data)
            found = part["executions"].get(wanted)
        except (ValueError, KeyError, AttributeError):
            log.warning("archive index %s does not read: passed over", key)
            continue
        if found is not None:
            return {
                "id": execution_id,
                "workspace_id": workspace_id,
                "status": found["status"],
                "key": found["object"],
                "sha256": found["sha256"],
                "bytes": found["bytes"],
                "events": found["events"],
                "created_at": datetime.fromisoformat(found["created_at"]),
                "archived_at": datetime.fromisoformat(found["archived_at"]),
                "restored_at": None,
                "folded_at": datetime.fromisoformat(part["folded_at"]),
            }
    return None


def _sweep_batch(
    conn: psycopg.Connection[Any],
    schema: str,
    archive: ArchiveStore,
    ids: list[UUID],
    done: Swept,
) -> None:
    """One batch; a batch that fails is tried again one execution at a time, so an execution
    that cannot be archived holds back only itself."""
    try:
        removed = archive_batch(conn, schema, archive, ids)
    except (ArchiveError, OSError, psycopg.Error) as exc:
        if len(ids) > 1:
            for one in ids:
                _sweep_batch(conn, schema, archive, [one], done)
            return
        log.warning("archiving %s failed (kept, tried again later): %s", ids[0], exc)
        done.failed.append(str(ids[0]))
        return
    done.archived += removed
    done.skipped += len(ids) - removed
