"""Retention on the engine as processes: finished executions past their workspace's retention
period are archived (a local folder, or an S3-compatible bucket served by ``moto_server``) and
removed from every store, view and inbox, while running and waiting ones are kept; replay of an
archived execution equals the replay before; kill -9 of the sweeping projector mid-sweep loses
no history and leaves none half-deleted; deleting a workspace removes all its data, archives
included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import psycopg
import pytest
from baton_common.approvals import approval_id_for
from baton_common.embedded import free_port
from baton_common.testing import wait_until

pytestmark = pytest.mark.e2e

SECOND = 1 / 86_400  # a day's fraction: retention_days of one second
LONG = 30.0

OK = {
    "name": "ok",
    "steps": [
        {"id": "a", "tool": "mock.agent", "input": {"output": "x"}},
        {"id": "say", "tool": "debug.log", "input": {"message": "hi"}, "depends_on": ["a"]},
    ],
}
GATED = {"name": "gated", "steps": [{"id": "pay", "tool": "mock.agent", "requires_approval": True}]}
SLOW = {"name": "slow", "steps": [{"id": "nap", "tool": "time.sleep", "input": {"seconds": 60}}]}

# Batches of 8: the kill -9 test's 60 executions take several transactions, so the kill lands
# between or inside them rather than after a single one.
ENV = {"BATON_ARCHIVE_INTERVAL": "0.3", "BATON_ARCHIVE_BATCH": "8"}


def workspace(engine: Engine) -> tuple[str, httpx.Client]:
    return engine.workspace("admin", "r")  # type: ignore[no-any-return]


def retention(engine: Engine, client: httpx.Client, ws: str, days: float) -> None:
    resp = client.put(f"{engine.url}/v1/workspaces/{ws}/policy", json={"retention_days": days})
    assert resp.status_code == 200, resp.text


def run(engine: Engine, client: httpx.Client, plan: dict[str, Any]) -> str:
    resp = client.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def finished(engine: Engine, client: httpx.Client, eid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        view = client.get(f"{engine.url}/v1/executions/{eid}").json()
        return view if view.get("status") in ("succeeded", "failed", "cancelled") else None

    found: dict[str, Any] = wait_until(done, 60, f"execution {eid} finished")
    return found


def history(engine: Engine, client: httpx.Client, eid: str) -> dict[str, Any]:
    """What a reader of the past sees: the events, and the replayed view as of the last one."""
    events = client.get(f"{engine.url}/v1/executions/{eid}/events").json()["items"]
    at = client.get(f"{engine.url}/v1/executions/{eid}/replay", params={"at": len(events)})
    assert at.status_code == 200, at.text
    return {"events": events, "replay": at.json()}


def archived(engine: Engine, client: httpx.Client, eid: str) -> dict[str, Any] | None:
    view: dict[str, Any] = client.get(f"{engine.url}/v1/executions/{eid}").json()
    return view if "archived_at" in view else None


def stored(engine: Engine, eid: str) -> dict[str, int]:
    """Rows of the execution left in the database: each store's events, its history, inbox."""
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        counts = {
            store: conn.execute(
                f"SELECT count(*) FROM {store}_events WHERE originator_id = %s", (eid,)
            ).fetchone()[0]  # type: ignore[index]
            for store in ("gateway", "planner", "executor")
        }
        counts["history"] = conn.execute(
            "SELECT count(*) FROM execution_events WHERE execution_id = %s", (eid,)
        ).fetchone()[0]  # type: ignore[index]
    return counts


def inbox_rows(engine: Engine, event_ids: list[str]) -> int:
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '%\\_inbox'"
            )
        ]
        return sum(
            conn.execute(
                f"SELECT count(*) FROM {t} WHERE message_id = ANY(%s)", (event_ids,)
            ).fetchone()[0]  # type: ignore[index]
            for t in tables
        )


def attempt_rows(engine: Engine, ids: list[str]) -> int:
    """The agent registry's rows (``tool_attempts``) of these executions."""
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM tool_attempts WHERE execution_id = ANY(%s::uuid[])", (ids,)
        ).fetchone()
        return int(row[0]) if row else 0


def counted_rows(engine: Engine, event_ids: list[str]) -> int:
    """The metrics' record of the events it counted (dedupe rows, one per event)."""
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM business_metric_events WHERE event_id = ANY(%s::uuid[])",
            (event_ids,),
        ).fetchone()
        return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def local(module_engine: Any) -> Engine:
    return module_engine(ENV)


def test_finished_executions_are_archived_running_and_waiting_kept_replay_unchanged(
    local: Engine,
) -> None:
    engine = local
    ws, client = workspace(engine)
    done = [run(engine, client, OK) for _ in range(3)]
    gated = run(engine, client, GATED)
    waiting, running = run(engine, client, GATED), run(engine, client, SLOW)
    gate = approval_id_for(uuid.UUID(gated), "pay")
    wait_until(
        lambda: (
            client.post(
                f"{engine.url}/v1/approvals/{gate}/decision", json={"decision": "approve"}
            ).status_code
            == 200
        ),
        30,
        "the gate approved",
    )
    done.append(gated)
    before = {eid: finished(engine, client, eid) for eid in done}
    wait_until(
        lambda: (
            client.get(f"{engine.url}/v1/executions/{waiting}").json()["status"] == "running"
            and client.get(f"{engine.url}/v1/executions/{running}").json()["status"] == "running"
        ),
        30,
        "the waiting and the running one started",
    )
    pasts = {eid: history(engine, client, eid) for eid in done}
    as_ws = {"BATON_API_KEY": _key(client)}
    cli_before = {eid: engine.cli("replay", eid, "--json", env=as_ws).stdout for eid in done}
    assert all(cli_before.values())
    event_ids = [e["event_id"] for eid in done for e in pasts[eid]["events"]]
    assert inbox_rows(engine, event_ids) > 0  # the consumers recorded them
    assert counted_rows(engine, event_ids) > 0  # and the business metrics counted them
    attempts = attempt_rows(engine, done)
    assert attempts >= 2 * 3 + 1  # and the registry each step's attempt (two each, the gated one)

    retention(engine, client, ws, SECOND)
    for eid in done:
        summary = wait_until(lambda e=eid: archived(engine, client, e), 30, f"{eid} archived")
        assert summary["status"] == before[eid]["status"]
        assert summary["plan"]["name"] == before[eid]["plan"]["name"]
        assert stored(engine, eid) == {"gateway": 0, "planner": 0, "executor": 0, "history": 0}
    assert inbox_rows(engine, event_ids) == 0
    assert counted_rows(engine, event_ids) == 0
    assert attempt_rows(engine, done) == 0  # in the archive now (restored with it)
    for eid in (waiting, running):  # never touched, however old their last change
        view = client.get(f"{engine.url}/v1/executions/{eid}").json()
        assert "archived_at" not in view and view["status"] == "running"
        assert stored(engine, eid)["executor"] > 0

    for eid in done:  # the past reads the same from the archive
        assert history(engine, client, eid) == pasts[eid]
        assert engine.cli("replay", eid, "--json", env=as_ws).stdout == cli_before[eid]
    listed = client.get(f"{engine.url}/v1/executions", params={"limit": 100}).json()["items"]
    assert {r["id"] for r in listed} >= {*done, waiting, running}  # the list stays right

    shown = engine.cli("archive", "show", done[0], env=as_ws)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["manifest"]["sha256"] == record["sha256"]
    assert record["manifest"]["counts"]["execution_events"] == len(pasts[done[0]]["events"])
    folder = engine.data_dir / "archive"
    assert (folder / record["key"]).is_file()
    listing = engine.cli("archive", "list", env=as_ws)
    assert all(eid in listing.stdout for eid in done), listing.stdout

    # a rebuild of the views from the stream leaves the archived ones summaries, the same past
    rebuilt = engine.cli("projections", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    for eid in done:
        assert archived(engine, client, eid), eid
        assert stored(engine, eid)["history"] == 0
        assert history(engine, client, eid) == pasts[eid]

    # restore: the history is back in the views (the events route reads them), then swept again
    retention(engine, client, ws, LONG)
    restored = engine.cli("archive", "restore", done[0], env=as_ws)
    assert restored.returncode == 0, restored.stderr
    assert stored(engine, done[0])["history"] == len(pasts[done[0]]["events"])
    assert attempt_rows(engine, done[:1]) >= 2
    assert "archived_at" not in client.get(f"{engine.url}/v1/executions/{done[0]}").json()
    assert history(engine, client, done[0]) == pasts[done[0]]
    retention(engine, client, ws, SECOND)
    wait_until(lambda: archived(engine, client, done[0]), 30, "the restored one archived again")
    assert stored(engine, done[0])["history"] == 0
    assert history(engine, client, done[0]) == pasts[done[0]]
    client.post(f"{engine.url}/v1/executions/{running}/cancel")
    client.post(f"{engine.url}/v1/executions/{waiting}/cancel")
    for eid in (running, waiting):  # finished now: a sweep on demand takes them
        finished(engine, client, eid)
    refused = client.post(f"{engine.url}/v1/archive/run")  # a workspace admin: not the owner
    assert refused.status_code == 403, refused.text

    def swept() -> bool:
        """A sweep run by the installation's owner (`baton up`'s key) took both: their
        retention (a second) counts from their cancellation, so a sweep may come too soon."""
        ran = engine.cli("archive", "run")
        assert ran.returncode == 0 and ran.stdout.startswith("archived "), ran.stderr
        return all(archived(engine, client, eid) for eid in (running, waiting))

    wait_until(swept, 30, "a sweep on demand archived the two")


def test_a_folded_execution_is_found_by_id_in_the_archive_day_index(local: Engine) -> None:
    """Past the summary period (seconds here) the summary and the archive record go, in the
    fold's transaction; show, the summary, the events and replay (API and CLI) find the
    execution through the archive's day index (``replay --from-store`` in every workspace's),
    a restore is refused (it is counted by day), and
    an id the index does not hold is a clean 404."""
    engine = local
    ws, client = workspace(engine)
    eid = run(engine, client, OK)
    before = finished(engine, client, eid)
    past = history(engine, client, eid)
    as_ws = {"BATON_API_KEY": _key(client)}
    cli_before = engine.cli("replay", eid, "--json", env=as_ws).stdout
    assert cli_before
    resp = client.put(
        f"{engine.url}/v1/workspaces/{ws}/policy",
        json={"retention_days": SECOND, "summary_retention_days": 2 * SECOND},
    )
    assert resp.status_code == 200, resp.text
    url = engine.runtime()["database_url"]

    def rows(table: str) -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table} WHERE id = %s", (eid,)).fetchone()
            return int(row[0]) if row else 0

    wait_until(lambda: rows("executions") == 0, 60, f"{eid} folded")
    assert rows("archived_executions") == 0  # its record went with its summary
    index = list((engine.data_dir / "archive" / ws / "index").rglob("*.json"))
    assert any(eid in p.read_text() for p in index), index

    summary = client.get(f"{engine.url}/v1/executions/{eid}")
    assert summary.status_code == 200, summary.text
    assert summary.json()["folded_at"] and summary.json()["status"] == before["status"]
    assert history(engine, client, eid) == past  # events and replay, from the archive
    assert engine.cli("replay", eid, "--json", env=as_ws).stdout == cli_before
    # read straight from the stores (an operator, no workspace given): every day index is looked in
    assert engine.cli("replay", eid, "--json", "--from-store").stdout == cli_before
    shown = engine.cli("archive", "show", eid, "--lines", env=as_ws)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["manifest"]["sha256"] == record["sha256"] and record["folded_at"]
    assert len([x for x in record["lines"] if x["kind"] == "history"]) == len(past["events"])
    refused = engine.cli("archive", "restore", eid, env=as_ws)
    assert refused.returncode != 0 and "summary period" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert client.post(f"{engine.url}/v1/archive/{eid}/restore").status_code == 409

    unknown = str(uuid.uuid4())
    assert client.get(f"{engine.url}/v1/archive/{unknown}").status_code == 404
    assert client.get(f"{engine.url}/v1/executions/{unknown}").status_code == 404
    missing = engine.cli("archive", "show", unknown, env=as_ws)
    assert missing.returncode != 0 and "Traceback" not in missing.stderr, missing.stderr
    _, other = engine.workspace("admin", "o")  # another workspace's key: not found
    assert other.get(f"{engine.url}/v1/executions/{eid}").status_code == 404
    assert other.get(f"{engine.url}/v1/archive/{eid}").status_code == 404


def _key(client: httpx.Client) -> str:
    return str(client.headers["Authorization"]).removeprefix("Bearer ")


def test_kill_9_of_the_sweeping_projector_loses_no_history_and_leaves_none_half_deleted(
    local: Engine,
) -> None:
    engine = local
    ws, client = workspace(engine)
    body = {"items": [{"plan": OK} for _ in range(60)]}
    made = client.post(f"{engine.url}/v1/executions/batch", json=body)
    assert made.status_code == 202, made.text
    ids = [item["id"] for item in made.json()["items"]]
    for eid in ids:
        finished(engine, client, eid)
    pasts = {eid: history(engine, client, eid) for eid in ids}

    retention(engine, client, ws, SECOND)
    pids = engine.runtime()["pids"]

    def some_archived() -> int:
        return len(client.get(f"{engine.url}/v1/archive", params={"limit": 500}).json()["items"])

    wait_until(some_archived, 30, "the sweep started")
    os.kill(pids["projector"], signal.SIGKILL)
    at_kill = some_archived()
    wait_until(
        lambda: engine.runtime()["pids"]["projector"] != pids["projector"],
        30,
        "the projector restarted",
    )
    wait_until(lambda: some_archived() == len(ids), 60, "every execution archived")
    for eid in ids:  # each one whole in the archive, and nothing of it left behind
        assert archived(engine, client, eid), eid
        assert stored(engine, eid) == {"gateway": 0, "planner": 0, "executor": 0, "history": 0}
        assert history(engine, client, eid) == pasts[eid]
    assert attempt_rows(engine, ids) == 0
    # One archive record per execution and one history object each, however the batches fell
    # around the kill (a batch written but not committed was written again under the same keys).
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        keys = conn.execute(
            "SELECT key FROM archived_executions WHERE id = ANY(%s::uuid[])", (ids,)
        ).fetchall()
    assert len(keys) == len(ids)
    folder = engine.data_dir / "archive"
    assert all((folder / k).is_file() for (k,) in keys)
    print(f"\n[retention] projector killed with {at_kill}/{len(ids)} archived")


def test_a_workspace_is_deleted_with_all_its_data_archives_included(local: Engine) -> None:
    engine = local
    ws, client = workspace(engine)
    old = run(engine, client, OK)
    finished(engine, client, old)
    retention(engine, client, ws, SECOND)
    record = wait_until(lambda: archived(engine, client, old), 30, "archived")
    assert (engine.data_dir / "archive" / record["archive"]).is_file()
    retention(engine, client, ws, LONG)  # the next ones stay in the stores
    kept, busy = run(engine, client, OK), run(engine, client, SLOW)
    finished(engine, client, kept)

    refused = client.delete(f"{engine.url}/v1/workspaces/{ws}")
    assert refused.status_code == 409 and "in flight" in refused.text
    client.post(f"{engine.url}/v1/executions/{busy}/cancel")
    finished(engine, client, busy)
    answer = engine.cli("workspaces", "delete", ws, "--yes", "--json")
    assert answer.returncode == 0, answer.stderr
    removed = json.loads(answer.stdout)["removed"]
    assert removed["archive objects"] >= 2  # the history and its manifest
    assert removed["executions"] == 3 and removed["workspaces"] == 1
    assert removed["executor_events"] > 0 and removed["gateway_events"] > 0, removed
    assert not (engine.data_dir / "archive" / ws).exists()
    for eid in (old, kept, busy):
        assert stored(engine, eid) == {"gateway": 0, "planner": 0, "executor": 0, "history": 0}
    assert engine.http.get(f"{engine.url}/v1/workspaces/{ws}").status_code == 404
    assert engine.http.get(f"{engine.url}/v1/executions/{kept}").status_code == 404
    with psycopg.connect(engine.runtime()["database_url"], autocommit=True) as conn:
        for table in ("executions", "api_keys", "audit", "archived_executions"):
            left = conn.execute(f"SELECT count(*) FROM {table} WHERE workspace_id = %s", (ws,))
            assert left.fetchone()[0] == 0, table  # type: ignore[index]
    refused = engine.http.delete(f"{engine.url}/v1/workspaces/default")
    assert refused.status_code == 409


# --- an S3-compatible bucket ---------------------------------------------------------------------


@pytest.fixture
def bucket(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A ``moto_server`` process (an S3-compatible server) with one bucket."""
    server = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    port = free_port()
    env = {
        "AWS_ACCESS_KEY_ID": "baton-test",
        "AWS_SECRET_ACCESS_KEY": "baton-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(endpoint), 30, "moto_server up")
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, **_creds(env))
        s3.create_bucket(Bucket="baton-archive")
        yield env | {
            "BATON_ARCHIVE_ENDPOINT": endpoint,
            "BATON_ARCHIVE_URL": "s3://baton-archive/e2e",
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        log.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def _creds(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def test_histories_go_to_an_s3_bucket_and_read_back_the_same(
    own_engine: Any, bucket: dict[str, str]
) -> None:
    engine = own_engine({**ENV, **bucket})
    ws, client = workspace(engine)
    eid = run(engine, client, OK)
    finished(engine, client, eid)
    past = history(engine, client, eid)
    retention(engine, client, ws, SECOND)
    summary = wait_until(lambda: archived(engine, client, eid), 30, "archived")
    import boto3

    s3 = boto3.client("s3", endpoint_url=bucket["BATON_ARCHIVE_ENDPOINT"], **_creds(bucket))
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="baton-archive")["Contents"]]
    assert f"e2e/{summary['archive']}" in keys
    assert any(k.endswith(f"{eid}.manifest.json") for k in keys)
    assert stored(engine, eid)["executor"] == 0
    assert history(engine, client, eid) == past

    gone = client.delete(f"{engine.url}/v1/workspaces/{ws}")
    assert gone.status_code == 200, gone.text
    assert gone.json()["removed"]["archive objects"] == 2
    left = s3.list_objects_v2(Bucket="baton-archive", Prefix=f"e2e/{ws}/")
    assert left.get("KeyCount", 0) == 0
