"""Audit retention on the engine as processes: audit rows older than
``BATON_AUDIT_RETENTION_DAYS`` (here seconds) are written to the archive, then removed from the
``audit`` table, and read back by day (``GET /v1/audit/archived/{day}``, ``baton archive audit``);
kill -9 of the sweeping projector mid-sweep loses none and archives none twice; a temporary file
of a killed write is removed by the next sweep; deleting the workspace removes its audit
archives."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import psycopg
import pytest
from baton_common.testing import wait_until

pytestmark = pytest.mark.e2e

OK = {"name": "ok", "steps": [{"id": "a", "tool": "mock.agent", "input": {"output": "x"}}]}
# A retention of 15 seconds (long enough to read the rows first on a loaded machine), a sweep
# every 0.3 s, and ten audit rows per transaction (ten times BATON_ARCHIVE_BATCH): the kill -9
# test's 60 rows take several, so the kill lands between or inside them.
ENV = {
    "BATON_AUDIT_RETENTION_DAYS": str(15 / 86_400),
    "BATON_ARCHIVE_INTERVAL": "0.3",
    "BATON_ARCHIVE_BATCH": "1",
}


@pytest.fixture(scope="module")
def engine(module_engine: Any) -> Engine:
    return module_engine(ENV)


def _key(client: httpx.Client) -> str:
    return str(client.headers["Authorization"]).removeprefix("Bearer ")


def live(engine: Engine, client: httpx.Client) -> list[dict[str, Any]]:
    resp = client.get(f"{engine.url}/v1/audit", params={"limit": 1000})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def archived(engine: Engine, client: httpx.Client) -> list[dict[str, Any]]:
    """Every archived audit row of the workspace, day by day, as the API reads them back."""
    days = client.get(f"{engine.url}/v1/audit/archived")
    assert days.status_code == 200, days.text
    rows: list[dict[str, Any]] = []
    for d in days.json()["items"]:
        got = client.get(f"{engine.url}/v1/audit/archived/{d['day']}")
        assert got.status_code == 200, got.text
        rows += got.json()["items"]
    return rows


def in_table(engine: Engine, event_ids: list[str]) -> int:
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM audit WHERE event_id = ANY(%s::uuid[])", (event_ids,)
        ).fetchone()
        return int(row[0]) if row else 0


def records(engine: Engine, ws: str) -> list[tuple[Any, ...]]:
    """The workspace's archived parts as recorded: key, checksum, rows, when archived."""
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        return conn.execute(
            "SELECT key, sha256, rows, archived_at FROM audit_archives WHERE workspace_id = %s"
            " ORDER BY key",
            (ws,),
        ).fetchall()


def test_audit_rows_are_archived_removed_and_read_back_by_day(engine: Engine) -> None:
    ws, client = engine.workspace("admin", "a")
    resp = client.post(f"{engine.url}/v1/executions", json={"plan": OK})
    assert resp.status_code == 202, resp.text
    before = wait_until(
        lambda: (
            (rows := live(engine, client))
            and any(r["action"] == "execution.requested" for r in rows)
            and rows
        ),
        15,
        "the request in the audit trail",
    )
    ids = [r["event_id"] for r in before]

    wait_until(lambda: in_table(engine, ids) == 0, 60, "the audit rows archived and removed")
    assert not {r["event_id"] for r in live(engine, client)} & set(ids)
    back = {r["event_id"]: r for r in archived(engine, client)}
    for row in before:  # each one, as the live trail showed it (its cursor aside)
        assert {k: v for k, v in row.items() if k != "seq"} == back[row["event_id"]]

    # the CLI reads a day, and the days
    day = back[ids[0]]["occurred_at"][:10]
    as_ws = {"BATON_API_KEY": _key(client)}
    days = engine.cli("archive", "audit", "--json", env=as_ws)
    assert days.returncode == 0, days.stderr
    assert day in {d["day"] for d in json.loads(days.stdout)}
    shown = engine.cli("archive", "audit", day, "--json", env=as_ws)
    assert shown.returncode == 0, shown.stderr
    assert set(ids) <= {r["event_id"] for r in json.loads(shown.stdout)}
    bad = engine.cli("archive", "audit", "2026-13-45", env=as_ws)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert client.get(f"{engine.url}/v1/audit/archived/yesterday").status_code == 422
    folder = engine.data_dir / "archive" / ws / "audit"
    assert list(folder.rglob("*.jsonl.gz")) and list(folder.rglob("*.manifest.json"))

    # a rebuild of the views makes no archived row live again (the workspace's own events, its
    # creation and its key, are still in its store), so none is archived twice
    parts = records(engine, ws)
    rebuilt = engine.cli("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert in_table(engine, ids) == 0
    time.sleep(1)  # sweeps ran since (every 0.3 s): none found a row to archive again
    assert records(engine, ws) == parts
    again = [r["event_id"] for r in archived(engine, client)]
    assert sorted(again) == sorted(set(again)) and set(ids) <= set(again)

    # deleting the workspace removes its audit archives and their records
    wait_until(
        lambda: (
            client.get(f"{engine.url}/v1/executions").json()["items"][0]["status"]
            in ("succeeded", "failed")
        ),
        60,
        "the execution finished",
    )
    answer = engine.cli("workspaces", "delete", ws, "--yes", "--json")
    assert answer.returncode == 0, answer.stderr
    removed = json.loads(answer.stdout)["removed"]
    assert removed["audit_archives"] >= 1, removed
    assert not (engine.data_dir / "archive" / ws).exists()


def test_kill_9_of_the_sweeping_projector_loses_no_audit_row_and_archives_none_twice(
    engine: Engine,
) -> None:
    ws, client = engine.workspace("admin", "k")
    # what a write killed half-way leaves: the next sweep removes it
    incoming = engine.data_dir / "archive" / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    leftover = incoming / "x.jsonl.gz.killed.part"
    leftover.write_bytes(b"half")
    body = {"items": [{"plan": OK} for _ in range(10)]}
    for _ in range(6):  # spread over seconds, so they expire (and are swept) over seconds
        made = client.post(f"{engine.url}/v1/executions/batch", json=body)
        assert made.status_code == 202, made.text
        time.sleep(1)
    wait_until(lambda: len(live(engine, client)) >= 60, 30, "the requests in the audit trail")
    ids = [r["event_id"] for r in live(engine, client)]
    wait_until(lambda: not leftover.exists(), 30, "the next sweep removed the leftover")

    pids = engine.runtime()["pids"]
    wait_until(lambda: archived(engine, client), 60, "the audit sweep started")
    os.kill(pids["projector"], signal.SIGKILL)
    at_kill = len(archived(engine, client))
    wait_until(
        lambda: engine.runtime()["pids"]["projector"] != pids["projector"],
        30,
        "the projector restarted",
    )
    wait_until(lambda: in_table(engine, ids) == 0, 60, "every audit row archived")
    back = [r["event_id"] for r in archived(engine, client)]
    assert sorted(back) == sorted(set(back))  # none twice, however the parts fell
    assert set(ids) <= set(back)  # none lost
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        keys = conn.execute("SELECT key FROM audit_archives WHERE workspace_id = %s", (ws,))
        found = [k for (k,) in keys]
    folder = engine.data_dir / "archive"
    assert found and all((folder / k).is_file() for k in found)
    print(f"\n[audit retention] projector killed with {at_kill}/{len(ids)} rows archived")
