"""Archived executions' summary rows past the summary period (seconds here) are folded by the
sweep into per-day counts on real PostgreSQL: the rows go, the workspace's counts by status stay
the same, the archive still lists every execution, and restored ones, and those of a workspace
with a longer period of its own, stay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from baton_common.archive import ArchiveError, LocalArchive
from baton_common.archived import restore, resummarise
from baton_common.readmodels import create_tables
from baton_common.retention import RetentionSettings, connect, find_folded, sweep
from baton_gateway.reads import ViewReader
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.integration
DAY = datetime(2026, 3, 1, 9, tzinfo=UTC)


def execution(
    conn: psycopg.Connection[Any], schema: str, ws: str, status: str, plan: str, archived: bool
) -> UUID:
    """A finished execution's row (its summary, if ``archived``), 2 s long, and its archive
    record."""
    eid = uuid4()
    finish = (DAY + timedelta(seconds=2)).isoformat()
    view: dict[str, Any] = {"plan": {"name": plan}, "finished_at": finish}
    if archived:
        view["archived_at"] = datetime.now(UTC).isoformat()
    conn.execute(
        f'INSERT INTO "{schema}".executions (id, workspace_id, status, request, created_at,'
        " updated_at, view) VALUES (%s, %s, %s, 'r', %s, now(), %s)",
        (eid, ws, status, DAY, Jsonb(view)),
    )
    conn.execute(
        f'INSERT INTO "{schema}".archived_executions (id, workspace_id, key, sha256, bytes,'
        " events, created_at, archived_at, restored_at) VALUES (%s, %s, 'k', 's', 1, 1, %s,"
        " now(), %s)",
        (eid, ws, DAY, None if archived else datetime.now(UTC)),
    )
    return eid


async def test_summaries_past_the_period_fold_into_day_counts_and_the_counts_stay(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_tables(conn, schema)
        runs = [("succeeded", "a")] * 3 + [("failed", "a"), ("succeeded", "b")]
        ids = [execution(conn, schema, "acme", s, p, archived=True) for s, p in runs]
        restored = execution(conn, schema, "acme", "succeeded", "a", archived=False)
        execution(conn, schema, "beta", "cancelled", "a", archived=True)
        kept = execution(conn, schema, "gamma", "succeeded", "a", archived=True)
        earlier = uuid4()  # folded by a sweep before the day index: its record marked folded
        conn.execute(
            f'INSERT INTO "{schema}".archived_executions (id, workspace_id, key, sha256, bytes,'
            " events, created_at, archived_at, folded_at) VALUES (%s, 'acme', 'e', 's', 1, 1,"
            " %s, now(), now())",
            (earlier, DAY),
        )
        conn.execute(  # gamma keeps its summaries for an hour
            f'INSERT INTO "{schema}".workspaces (id, name, created_at, policy) VALUES'
            " ('gamma', 'g', now(), %s)",
            (Jsonb({"summary_retention_days": 1 / 24}),),
        )
    reader = ViewReader(database_url, schema)
    await reader.open()
    try:
        before = await reader.counts("acme")
        rs = RetentionSettings(BATON_SUMMARY_RETENTION_DAYS=3 / 86_400)  # type: ignore[call-arg]
        archive = LocalArchive(tmp_path)
        assert (await asyncio.to_thread(sweep, database_url, schema, archive, rs)).folded == 0
        await asyncio.sleep(3.5)
        assert (
            await asyncio.to_thread(sweep, database_url, schema, archive, rs)
        ).folded == 6  # not the restored one, not gamma's
        assert await reader.counts("acme") == before == {"succeeded": 5, "failed": 1}
        assert await reader.counts("beta") == {"cancelled": 1}
        listed = await reader.archived("acme", 100, None)
        assert {r["id"] for r in listed} == {restored}  # the folded ones' records went with them
        for eid in ids:  # and are found in the archive's day index instead
            found = find_folded(archive, "acme", eid)
            assert found is not None and (found["key"], found["sha256"]) == ("k", "s")
        assert find_folded(archive, "acme", earlier)["key"] == "e"  # moved to the index
        assert find_folded(archive, "acme", uuid4()) is None
        assert find_folded(archive, "beta", ids[0]) is None  # another workspace's: not found
        with psycopg.connect(database_url, autocommit=True) as conn:
            records = conn.execute(f'SELECT id FROM "{schema}".archived_executions').fetchall()
            assert {r for (r,) in records} == {restored, kept}
        with psycopg.connect(database_url, autocommit=True) as conn:
            days = conn.execute(
                f'SELECT workspace_id, day, status, plan, count, duration_ms FROM "{schema}"'
                ".execution_day_counts ORDER BY 1, 3, 4"
            ).fetchall()
            left = conn.execute(f'SELECT id FROM "{schema}".executions').fetchall()
            assert sorted(left) == sorted([(restored,), (kept,)])  # restored: not a summary
        with connect(database_url) as conn:  # as the projector and the gateway call them
            assert resummarise(conn, schema, archive) == 0  # a rebuild: not made again
            with pytest.raises(ArchiveError, match="not archived"):
                restore(conn, schema, archive, ids[0])  # its record went (the route answers 409)
        day = DAY.date()
        assert days == [
            ("acme", day, "failed", "a", 1, 2000.0),
            ("acme", day, "succeeded", "a", 3, 6000.0),
            ("acme", day, "succeeded", "b", 1, 2000.0),
            ("beta", day, "cancelled", "a", 1, 2000.0),
        ]
    finally:
        await reader.close()
