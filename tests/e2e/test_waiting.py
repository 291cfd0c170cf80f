"""Waiting executions live in PostgreSQL, not in the executor: 100 executions at approval gates
and 100 in durable sleeps leave the executor's memory, and every one resumes, exactly once,
after the executor is killed (kill -9) and restarted by the supervisor."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from .conftest import Engine

pytestmark = pytest.mark.e2e

N = 100
NAP_S = 12  # long enough to park them all, kill the executor and see it back before they wake
GATED = {"steps": [{"id": "pay", "tool": "mock.critical", "input": {"action": "pay"}}]}
NAP = {"steps": [{"id": "nap", "tool": "time.sleep", "input": {"seconds": NAP_S}}]}


def submit(engine: Engine, client: httpx.Client, plan: dict[str, Any]) -> list[str]:
    resp = client.post(f"{engine.url}/v1/executions/batch", json={"items": [{"plan": plan}] * N})
    assert resp.status_code == 202, resp.text
    return [item["id"] for item in resp.json()["items"]]


def eventually(check: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        time.sleep(0.3)


def in_memory(engine: Engine) -> float:
    """The executor's gauge of the executions it holds in memory."""
    port = engine.runtime()["health_ports"]["executor"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        lines = resp.read().decode().splitlines()
    return float(next(ln for ln in lines if ln.startswith("baton_executions_cached")).split()[-1])


def statuses(engine: Engine, client: httpx.Client, ids: list[str], step: str) -> list[str]:
    views = [client.get(f"{engine.url}/v1/executions/{eid}").json() for eid in ids]
    return [v["steps"][step]["status"] for v in views]


def pending_gates(engine: Engine, client: httpx.Client) -> list[dict[str, Any]]:
    url = f"{engine.url}/v1/approvals"
    return list(client.get(url, params={"status": "pending", "limit": 1000}).json()["items"])


def view_when_ended(engine: Engine, client: httpx.Client, eid: str) -> dict[str, Any]:
    url = f"{engine.url}/v1/executions/{eid}"
    eventually(lambda: client.get(url).json()["status"] in ("succeeded", "failed"), eid)
    return dict(client.get(url).json())


def restart_executor(engine: Engine) -> None:
    """kill -9 of the executor; back when the supervisor's new one answers ready."""
    old = engine.runtime()["pids"]["executor"]
    os.kill(old, signal.SIGKILL)
    eventually(lambda: engine.runtime()["pids"]["executor"] != old, "the executor restarted")
    port = engine.runtime()["health_ports"]["executor"]

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, "the new executor ready")


def test_waiting_executions_leave_the_executors_memory_and_resume_after_a_kill_9(
    engine: Engine,
) -> None:
    _, client = engine.workspace("owner", "waiting")
    before = in_memory(engine)
    gated, napping = submit(engine, client, GATED), submit(engine, client, NAP)
    eventually(lambda: len(pending_gates(engine, client)) == N, "every gate open")
    eventually(
        lambda: set(statuses(engine, client, napping, "nap")) == {"running"}, "every nap begun"
    )
    assert in_memory(engine) <= before + 5  # not 200 more: they are rows in PostgreSQL only
    restart_executor(engine)
    for gate in pending_gates(engine, client):
        decided = client.post(
            f"{engine.url}/v1/approvals/{gate['id']}/decision", json={"decision": "approve"}
        )
        assert decided.status_code == 200, decided.text
    ended = [view_when_ended(engine, client, eid) for eid in gated + napping]
    assert [v["status"] for v in ended] == ["succeeded"] * (2 * N)
    naps = [v["steps"]["nap"] for v in ended[N:]]
    assert {(s["attempts"], s["output"]["slept"]) for s in naps} == {(1, NAP_S)}  # exactly once
    assert {v["steps"]["pay"]["attempts"] for v in ended[:N]} == {1}
