"""Kill -9 the executor and the tool workers with 50 executions in flight: nothing is lost,
no side effect happens twice."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from http.server import ThreadingHTTPServer
from typing import Any as Engine  # the fixture's type lives in conftest.py

import pytest
from baton_common.testing import LocalHandler

pytestmark = pytest.mark.e2e


class IdempotentService(ThreadingHTTPServer):
    """A downstream API that honours Idempotency-Key the way payment APIs do: the first call
    with a key does the work; a repeat gets the recorded answer without doing it again."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.performed: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self.no_key = 0


class _Handler(LocalHandler):
    server: IdempotentService

    def do_POST(self) -> None:
        key = self.headers.get("Idempotency-Key")
        self.body()
        with self.server.lock:
            if key is None:
                self.server.no_key += 1
            else:
                self.server.requests[key] += 1
            first = key is not None and key not in self.server.performed
            if first:
                self.server.performed[key] += 1
        if first:
            time.sleep(0.15)  # the work takes a while: a kill lands mid-call
        body = b'{"ok": true}'
        self.answer(200, body, {"Content-Type": "application/json"})


def _plan(port: int, n: int) -> dict:
    url = f"http://127.0.0.1:{port}/charge"
    steps = [
        {
            "id": "s0",
            "tool": "http.request",
            "input": {"url": url, "method": "POST", "json": {"n": n}},
        }
    ]
    steps += [
        {
            "id": f"s{i}",
            "tool": "http.request",
            "depends_on": [f"s{i - 1}"],
            "input": {"url": url, "method": "POST", "json": {"n": n, "step": i}},
        }
        for i in range(1, 5)
    ]
    return {"steps": steps}


def test_kill_executor_and_workers_mid_flight_every_execution_finishes_each_key_once(
    engine: Engine,
) -> None:
    service = IdempotentService()
    threading.Thread(target=service.serve_forever, daemon=True).start()
    port = service.server_address[1]
    ids = []
    for n in range(50):
        resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": _plan(port, n)})
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])

    deadline = time.monotonic() + 30
    while sum(service.performed.values()) < 40:  # well under way, far from done (250 calls)
        assert time.monotonic() < deadline, "the executions did not get going"
        time.sleep(0.01)
    pids = engine.runtime()["pids"]
    for name in ("executor", "worker"):
        os.kill(pids[name], signal.SIGKILL)
    performed_at_kill = sum(service.performed.values())
    assert performed_at_kill < 250

    views = [engine.wait(i, timeout=180) for i in ids]
    service.shutdown()
    assert [v["status"] for v in views] == ["succeeded"] * 50
    expected = {f"{i}:s{k}" for i in ids for k in range(5)}
    assert set(service.performed) == expected
    assert set(service.performed.values()) == {1}  # each step's side effect carried out once
    assert service.no_key == 0
    restarted = engine.runtime()["pids"]
    assert restarted["executor"] != pids["executor"] and restarted["worker"] != pids["worker"]
    print(
        f"\n[crash] killed at {performed_at_kill}/250 calls; "
        f"{sum(service.requests.values()) - 250} repeated calls answered from the idempotency record"
    )


class _SlowHandler(LocalHandler):
    calls: list[str] = []

    def do_POST(self) -> None:
        self.body()
        _SlowHandler.calls.append(self.headers.get("Idempotency-Key", ""))
        time.sleep(
            5
        )  # longer than the engine's ack wait (3 s in these tests): the lease must be renewed
        self.send_response(204)
        self.end_headers()


def test_a_call_longer_than_the_lease_is_not_handed_to_another_worker(engine: Engine) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/slow"
    plan = {"steps": [{"id": "slow", "tool": "http.request", "timeout": 30,
                       "input": {"url": url, "method": "POST", "json": {}}}]}  # fmt: skip
    eid = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan}).json()["id"]
    view = engine.wait(eid, timeout=60)
    server.shutdown()
    assert view["status"] == "succeeded", view
    assert _SlowHandler.calls == [
        f"{eid}:slow"
    ]  # one call: the lease held for 5 s against a 3 s ack wait
