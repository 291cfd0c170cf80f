"""Audit retention: audit rows older than ``BATON_AUDIT_RETENTION_DAYS`` are written to the
archive (the executions' folder or bucket), then removed from the ``audit`` table.

A part at a time, in steps that can each be run again, as ``retention`` archives executions:
choose the oldest expired rows (ten times ``BATON_ARCHIVE_BATCH``, oldest first), group them by
workspace and day, write each group as one object (gzipped JSON lines, one row a line) with its
manifest and read it back against its checksum, then one transaction deletes those rows and
records each part (``audit_archives``: its key, checksum, rows and times). A crash before that
transaction leaves every row where it was, and the next sweep writes the same objects again
(the key is the day and the first row's event: the same rows give the same key; a key already
recorded is never written again, rows that come back get a key of their own); a crash inside
it removes nothing. Reading goes by the records, so an object a killed sweep wrote and never
recorded is never read (the next sweep writes it again, or another part holds its rows).

With a period of a day or more, only whole days are taken (a day goes once all of it is past
the period): one part per workspace and day, at the price of keeping rows up to a day longer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256
from itertools import groupby
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from baton_common import archive as objects
from baton_common.archive import ArchiveError, ArchiveStore

# Rows per transaction, as a multiple of BATON_ARCHIVE_BATCH (an audit row is ~300 bytes where
# an execution's history is tens of KiB).
ROWS_PER_EXECUTION = 10

_EXPIRED = """
SELECT seq, event_id, workspace_id, occurred_at, actor, action, target, detail FROM {s}.audit
WHERE occurred_at < %(cutoff)s ORDER BY occurred_at, event_id LIMIT %(limit)s
"""


def cutoff(days: float, now: datetime | None = None) -> datetime:
    """Rows older than this are archived: the period ago, rounded down to the start of its day
    (UTC) when the period is a day or more."""
    at = (now or datetime.now(UTC)) - timedelta(days=days)
    return at.replace(hour=0, minute=0, second=0, microsecond=0) if days >= 1 else at


def part_key(workspace_id: str, day: date, first_event: str) -> str:
    """``<workspace>/audit/<YYYY>/<MM>/<DD>/<first row's event>.jsonl.gz``: under the
    workspace (deleting it deletes them), beside its executions' days."""
    return f"{workspace_id}/audit/{day:%Y/%m/%d}/{first_event}.jsonl.gz"


def _day(row: dict[str, Any]) -> tuple[str, date]:
    return row["workspace_id"], row["occurred_at"].astimezone(UTC).date()


def _line(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "audit",
        "format": objects.FORMAT,
        **{k: v for k, v in row.items() if k != "seq"},
        "event_id": str(row["event_id"]),
        "occurred_at": row["occurred_at"].isoformat(),
    }


def sweep_audit(
    conn: psycopg.Connection[Any], schema: str, archive: ArchiveStore, days: float, batch: int
) -> int:
    """Archive and remove every audit row older than ``days``, a part of at most
    ``batch`` times ``ROWS_PER_EXECUTION`` rows per transaction. How many rows went. The caller holds
    the sweep's lock (``retention.sweep``): one sweep of an installation at a time."""
    limit = batch * ROWS_PER_EXECUTION
    query = SQL(_EXPIRED).format(s=Identifier(schema))
    done = 0
    while rows := conn.execute(query, {"cutoff": cutoff(days), "limit": limit}).fetchall():
        done += _archive_part(conn, schema, archive, rows)
        if len(rows) < limit:
            break
    return done


def _archive_part(
    conn: psycopg.Connection[Any], schema: str, archive: ArchiveStore, rows: list[dict[str, Any]]
) -> int:
    parts: list[tuple[str, bytes, dict[str, Any]]] = []
    rows = sorted(rows, key=lambda r: (r["workspace_id"], r["occurred_at"], r["event_id"]))
    groups = [(ws_day, [_line(r) for r in group]) for ws_day, group in groupby(rows, key=_day)]
    recorded = _recorded(
        conn, schema, [part_key(*wd, lines[0]["event_id"]) for wd, lines in groups]
    )
    for (workspace_id, day), lines in groups:
        key = part_key(workspace_id, day, lines[0]["event_id"])
        if key in recorded:  # rows archived before came back: never replace what is recorded
            ids = "".join(line["event_id"] for line in lines).encode()
            key = part_key(
                workspace_id, day, f"{lines[0]['event_id']}.{sha256(ids).hexdigest()[:12]}"
            )
        data = objects.encode(lines)
        manifest = {
            "format": objects.FORMAT,
            "kind": "audit",
            "workspace_id": workspace_id,
            "day": day.isoformat(),
            "object": key.rsplit("/", 1)[-1],
            "sha256": objects.checksum(data),
            "bytes": len(data),
            "rows": len(lines),
            "first_at": lines[0]["occurred_at"],
            "last_at": lines[-1]["occurred_at"],
        }
        parts.append((key, data, manifest))
    objects.write_all(archive, parts)  # written and read back before anything is removed
    s = Identifier(schema)
    at = datetime.now(UTC)
    with conn.transaction():
        gone = conn.execute(
            SQL("DELETE FROM {s}.audit WHERE event_id = ANY(%s)").format(s=s),
            ([r["event_id"] for r in rows],),
        ).rowcount
        if gone != len(rows):  # some went meanwhile (a workspace deleted): start over
            raise ArchiveError(f"{len(rows) - gone} audit rows went while being archived")
        with conn.cursor() as cur:
            cur.executemany(
                SQL(
                    "INSERT INTO {s}.audit_archives (key, workspace_id, day, sha256, bytes, rows,"
                    " first_at, last_at, archived_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (key) DO UPDATE SET sha256 = EXCLUDED.sha256,"
                    " bytes = EXCLUDED.bytes, rows = EXCLUDED.rows, last_at = EXCLUDED.last_at,"
                    " archived_at = EXCLUDED.archived_at"
                ).format(s=s),
                [
                    (
                        key,
                        m["workspace_id"],
                        m["day"],
                        m["sha256"],
                        m["bytes"],
                        m["rows"],
                        m["first_at"],
                        m["last_at"],
                        at,
                    )
                    for key, _, m in parts
                ],
            )
    return len(rows)


def _recorded(conn: psycopg.Connection[Any], schema: str, keys: list[str]) -> set[str]:
    rows = conn.execute(
        SQL("SELECT key FROM {s}.audit_archives WHERE key = ANY(%s)").format(s=Identifier(schema)),
        (keys,),
    ).fetchall()
    return {r["key"] for r in rows}


def forget_archived(conn: psycopg.Connection[Any], schema: str) -> int:
    """After the views were rebuilt from the stream and the stores: the audit rows made again of
    events whose rows were archived already (a workspace's own events stay in its store for
    good) are removed, so no row is both archived and in the table. What each workspace's
    parts reach (their newest row) was all archived. How many went."""
    s = Identifier(schema)
    return conn.execute(
        SQL(
            "DELETE FROM {s}.audit a USING (SELECT workspace_id, max(last_at) AS upto"
            " FROM {s}.audit_archives GROUP BY 1) p"
            " WHERE a.workspace_id = p.workspace_id AND a.occurred_at <= p.upto"
        ).format(s=s)
    ).rowcount


# --- reading ---------------------------------------------------------------------------------------


def days(conn: psycopg.Connection[Any], schema: str, workspace_id: str) -> list[dict[str, Any]]:
    """The workspace's archived audit days, newest first: parts and rows of each."""
    rows = conn.execute(
        SQL(
            "SELECT day, count(*) AS parts, sum(rows) AS rows, sum(bytes) AS bytes,"
            " max(archived_at) AS archived_at FROM {s}.audit_archives WHERE workspace_id = %s"
            " GROUP BY day ORDER BY day DESC"
        ).format(s=Identifier(schema)),
        (workspace_id,),
    ).fetchall()
    return [
        {
            "day": r["day"].isoformat(),
            "parts": int(r["parts"]),
            "rows": int(r["rows"]),
            "bytes": int(r["bytes"]),
            "archived_at": r["archived_at"].isoformat(),
        }
        for r in rows
    ]


def read_day(
    conn: psycopg.Connection[Any],
    schema: str,
    archive: ArchiveStore,
    workspace_id: str,
    day: date,
    actor: str | None = None,
) -> list[dict[str, Any]] | None:
    """Every archived audit row of the workspace on ``day`` (UTC), newest first, each part
    checked against its recorded checksum; only ``actor``'s when given. None: the workspace
    has no archived part of that day."""
    parts = conn.execute(
        SQL(
            "SELECT key, sha256 FROM {s}.audit_archives WHERE workspace_id = %s AND day = %s"
            " ORDER BY first_at, key"
        ).format(s=Identifier(schema)),
        (workspace_id, day),
    ).fetchall()
    if not parts:
        return None
    found = [
        {k: v for k, v in line.items() if k not in ("kind", "format", "workspace_id")}
        for line in _lines(archive, parts)
        if actor is None or line.get("actor") == actor
    ]
    found.sort(key=lambda r: (r["occurred_at"], r["event_id"]), reverse=True)
    return found


def _lines(archive: ArchiveStore, parts: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for part in parts:
        yield from objects.read_verified(archive, part["key"], part["sha256"])


def manifest(archive: ArchiveStore, key: str) -> dict[str, Any] | None:
    data = archive.get(objects.manifest_key(key))
    return json.loads(data) if data else None
