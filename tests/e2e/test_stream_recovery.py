"""Every consumer the stream left behind recovers from the stores: a service stopped while the
stream's limits (3 s here) drop what it was never given reads it from PostgreSQL when it is back,
and ends where it would have without the outage."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import pytest
from baton_common.fakemodels import Reply, ScriptedServer
from baton_common.testing import wait_until

from tests.e2e.test_stream_limits import PLAN, stream_state

pytestmark = pytest.mark.e2e

GATED = {
    "name": "gated while away",
    "steps": [{"id": "g", "tool": "mock.agent", "input": {"task": "g"}, "requires_approval": True}],
}


@pytest.fixture(scope="module")
def engine(module_engine: Callable[[dict[str, str]], Engine]) -> Engine:
    return module_engine({"BATON_STREAM_MAX_AGE": "3"})


def start(engine: Engine, plan: dict[str, Any]) -> str:
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


@contextmanager
def away(engine: Engine, service: str) -> Iterator[None]:
    """``service`` takes nothing while the block runs and until the stream has dropped what was
    published meanwhile; then it is killed, and `baton up` starts it again."""
    pid = engine.runtime()["pids"][service]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
        last = stream_state(engine).last_seq
        wait_until(lambda: stream_state(engine).first_seq > last, 30, "the stream dropped them")
    finally:
        # A stopped process dies of SIGKILL too (the fork server may reap it at once: no
        # SIGCONT after it); `baton up` starts it again.
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: engine.runtime()["pids"][service] != pid, 30, f"a new {service}")


class SlowApi(ScriptedServer):
    """Answers each call after a while, and keeps each call's idempotency key."""

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str | None] = []
        self.answered = 0

    def record(self, path: str, headers: Any, body: dict[str, Any]) -> None:
        with self.lock:
            self.keys.append(headers.get("Idempotency-Key"))

    def answer(self, path: str, body: dict[str, Any]) -> Reply:
        time.sleep(4)  # long after the executor is stopped (below)
        with self.lock:
            self.answered += 1
        return 200, {"done": True}


def recovered(engine: Engine, service: str) -> bool:
    log = (engine.data_dir / "logs" / f"{service}.log").read_text(errors="replace")
    return "events read from the stores" in log


def test_an_executor_back_after_the_stream_dropped_its_requests_runs_them(engine: Engine) -> None:
    assert engine.wait(start(engine, PLAN))["status"] == "succeeded"  # the executor consumed
    with away(engine, "executor"):
        ids = [start(engine, PLAN) for _ in range(3)]  # stored by the gateway, never taken
    for eid in ids:
        view = engine.wait(eid, timeout=90)
        assert view["status"] == "succeeded"
        assert {s["status"] for s in view["steps"].values()} == {"succeeded"}
    assert recovered(engine, "executor")


def test_an_outcome_the_stream_dropped_while_the_executor_was_away_comes_again(
    engine: Engine,
) -> None:
    """The worker's report is not stored anywhere: the task goes to the workers again, as the
    same attempt under the same idempotency key, and the step succeeds at once instead of
    failing at its deadline."""
    with SlowApi().running() as api:
        step = {"id": "call", "tool": "http.request", "timeout": 300}
        step["input"] = {"url": f"{api.url}/do", "method": "POST", "json": {}}
        eid = start(engine, {"name": "slow", "steps": [step]})
        wait_until(lambda: api.keys, 30, "the worker called")
        # The executor's relay saves its position within half a second of publishing: stopped
        # sooner, it would publish the task again itself when back (the duplicate window, as
        # short as this stream's age, being past), and this test would not see the recovery.
        time.sleep(1.5)
        with away(engine, "executor"):  # the worker reports while the executor takes nothing
            wait_until(lambda: api.answered, 30, "the call answered")
            time.sleep(0.5)  # its report published
        view = engine.wait(eid, timeout=60)
        assert view["status"] == "succeeded"
        assert view["steps"]["call"]["attempts"] == 1
        assert len(api.keys) == 2 and api.keys[0] == api.keys[1] == f"{eid}:call"
    log = (engine.data_dir / "logs" / "executor.log").read_text(errors="replace")
    assert "tasks sent to the workers again" in log


def test_a_gate_asked_for_while_hitl_was_away_can_be_decided(engine: Engine) -> None:
    assert engine.wait(start(engine, PLAN))["status"] == "succeeded"
    with away(engine, "hitl"):
        eid = start(engine, GATED)
        wait_until(lambda: gated(engine, eid), 30, "the executor asked for the gate")
    gate = wait_until(lambda: pending_gate(engine, eid), 60, "the gate in the inbox")
    decided = wait_until(
        lambda: approved(engine, gate), 60, "the hitl service took the gate and its decision"
    )
    assert decided.status_code == 200, decided.text
    assert engine.wait(eid, timeout=60)["status"] == "succeeded"
    assert recovered(engine, "hitl")


def gated(engine: Engine, eid: str) -> bool:
    view = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()
    return bool(view.get("steps", {}).get("g", {}).get("status") == "waiting_approval")


def pending_gate(engine: Engine, eid: str) -> dict[str, Any] | None:
    items = engine.http.get(
        f"{engine.url}/v1/approvals", params={"execution": eid, "status": "pending"}
    ).json()["items"]
    return dict(items[0]) if items else None


def approved(engine: Engine, gate: dict[str, Any]) -> Any:
    """The decision's answer once the hitl service knows the gate (before: not found)."""
    resp = engine.http.post(
        f"{engine.url}/v1/approvals/{gate['id']}/decision", json={"decision": "approve"}
    )
    return resp if resp.status_code != 404 else None
