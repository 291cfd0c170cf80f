"""Live step logs on the engine as processes: `baton logs -f` prints a step's lines while it
runs; a tool that floods its log is bounded and the drop is marked, and other executions go on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest

pytestmark = pytest.mark.e2e
BATON = str(Path(sys.executable).parent / "baton")


def submit(engine: Engine, plan: dict[str, Any]) -> str:
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def test_baton_logs_follow_shows_lines_while_the_step_runs(engine: Engine) -> None:
    # Lines 3 s apart: room for the CLI to start on a busy machine before the step ends.
    step = {"message": "working", "lines": 4, "interval_s": 3}
    eid = submit(engine, {"steps": [{"id": "talk", "tool": "debug.log", "input": step}]})
    follow = subprocess.Popen(
        [BATON, "logs", eid, "-f"], env=engine.env, stdout=subprocess.PIPE, text=True
    )
    assert follow.stdout is not None
    first = follow.stdout.readline()
    # The first line is out while the step still runs (it writes three more).
    status = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()["status"]
    assert "talk#1" in first and "working (1/4)" in first, first
    assert status == "running"
    rest = follow.stdout.read()
    assert follow.wait(60) == 0
    printed = [first, *rest.splitlines()]
    assert [f"working ({n}/4)" in text for n, text in enumerate(printed, 1)] == [True] * 4
    engine.wait(eid)
    page = engine.http.get(f"{engine.url}/v1/executions/{eid}/logs").json()["items"]
    assert [r["message"] for r in page] == [f"working ({n}/4)" for n in range(1, 5)]
    done = engine.cli("logs", eid)
    assert done.returncode == 0 and done.stdout.count("working") == 4


def test_a_flood_of_lines_is_bounded_and_marked_and_others_finish(engine: Engine) -> None:
    flood = {"message": "spam " * 1000, "lines": 200_000}
    noisy = submit(engine, {"steps": [{"id": "flood", "tool": "debug.log", "input": flood}]})
    quiet = [
        submit(engine, {"steps": [{"id": "a", "tool": "mock.agent", "input": {"output": n}}]})
        for n in range(20)
    ]
    assert all(engine.wait(q)["status"] == "succeeded" for q in quiet)
    assert engine.wait(noisy, timeout=120)["status"] == "succeeded"
    rows = engine.http.get(f"{engine.url}/v1/executions/{noisy}/logs?limit=10000").json()["items"]
    lines = [r for r in rows if not r["marker"]]
    markers = [r for r in rows if r["marker"]]
    dropped = sum(int(re.search(r"(\d+) line", m["message"]).group(1)) for m in markers)  # type: ignore[union-attr]
    # Bounded: a burst of 200 lines and 100 lines/s after it, never over 1,000 per attempt;
    # each line cut to 2,000 characters.
    assert 0 < len(lines) <= 1000 and all(r["cut"] and len(r["message"]) <= 2001 for r in lines)
    assert markers and len(lines) + dropped == 200_000
    assert "over the step log limit" in markers[-1]["message"]
    out = engine.cli("logs", noisy)
    assert out.returncode == 0 and "dropped" in out.stdout


def test_each_service_reports_latency_lag_and_redeliveries_on_metrics(engine: Engine) -> None:
    say = {"steps": [{"id": "say", "tool": "debug.log", "input": {"message": "m"}}]}
    engine.wait(submit(engine, say))
    ports = engine.runtime()["health_ports"]
    texts: dict[str, str] = {}
    for _ in range(100):  # lag is sampled when /metrics is read, at most every 5 s
        texts = {
            name: httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            for name, port in ports.items()
        }
        if "baton_consumer_pending_messages" in texts["executor"]:
            break
        time.sleep(0.2)
    worker = texts["worker"]
    assert (
        'baton_step_duration_seconds_bucket{le="0.005",outcome="succeeded",tool="debug.log"}'
        in worker
    )
    assert 'baton_consumer_pending_messages{consumer="workers"}' in worker
    executor = texts["executor"]
    for name in ("pending", "ack_pending", "redelivered"):
        assert f'baton_consumer_{name}_messages{{consumer="executor"}}' in executor
    assert 'baton_commit_duration_seconds_count{consumer="executor"}' in executor
    assert "baton_relay_publish_duration_seconds_count" in executor
    assert "baton_relay_lag_events" in executor and "baton_dead_letters" in executor


def test_every_service_logs_json_records_with_the_same_keys(engine: Engine) -> None:
    keys = {"time", "level", "service", "logger", "message", "workspace_id", "execution_id"}
    keys |= {"step_id", "trace_id", "span_id"}
    services = set()
    for path in sorted((engine.data_dir / "logs").glob("*.log")):
        for text in path.read_text(errors="replace").splitlines():
            if text.strip():
                record = json.loads(text)  # every line is one JSON object
                assert set(record) >= keys, (path.name, text)
                services.add(record["service"])
    assert {"gateway", "planner", "executor", "worker", "projector", "hitl"} <= services
