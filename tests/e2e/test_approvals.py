"""Approval gates on the engine as processes (gateway, executor, workers, hitl, projector):
approve, reject with compensation, edit, deadlines with each policy, escalation, two approvers,
the 403/404/409/422 answers, kill -9 of hitl and of the executor while a gate is open, and a
side-effect counter proving that nothing before a gate runs twice."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_common.testing import LocalHandler, serving

pytestmark = pytest.mark.e2e


class Ledger(ThreadingHTTPServer):
    """A downstream API that records every call: path, idempotency key and body, in order."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.calls: list[tuple[str, str | None, Any]] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{path}"

    def count(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _, _ in self.calls if p == f"/{path}")

    def paths(self) -> list[str]:
        with self.lock:
            return [p for p, _, _ in self.calls]

    def body_of(self, path: str) -> Any:
        with self.lock:
            return next(b for p, _, b in self.calls if p == f"/{path}")


class _Handler(LocalHandler):
    server: Ledger

    def do_POST(self) -> None:
        body = self.body()
        with self.server.lock:
            self.server.calls.append(
                (self.path, self.headers.get("Idempotency-Key"), json.loads(body or b"null"))
            )
        self.answer(200, b"{}", {"Content-Type": "application/json"})


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with serving(Ledger()) as server:
        yield server


def post(ledger: Ledger, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "tool": "http.request",
        "input": {"url": ledger.url(path), "method": "POST", "json": {"call": path}},
        **extra,
    }


def undo(ledger: Ledger, path: str) -> dict[str, Any]:
    return {
        "tool": "http.request",
        "input": {"url": ledger.url(f"undo-{path}"), "method": "POST", "json": {}},
    }


def gated_plan(ledger: Ledger, approval: dict[str, Any] | None = None) -> dict[str, Any]:
    """before → gated (approval) → after; `before` has a compensation."""
    gate: dict[str, Any] = {"approval": approval} if approval else {"requires_approval": True}
    return {
        "steps": [
            {"id": "before", **post(ledger, "before"), "compensate": undo(ledger, "before")},
            {"id": "gated", **post(ledger, "gated"), "depends_on": ["before"], **gate},
            {"id": "after", **post(ledger, "after"), "depends_on": ["gated"]},
        ]
    }


class People:
    """Keys of the default workspace, one per person."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clients: dict[str, httpx.Client] = {}

    def __call__(self, name: str, role: str = "approver") -> httpx.Client:
        if name not in self.clients:
            made = self.engine.http.post(
                f"{self.engine.url}/v1/workspaces/default/keys", json={"role": role, "name": name}
            )
            assert made.status_code == 201, made.text
            self.clients[name] = httpx.Client(
                headers={"Authorization": f"Bearer {made.json()['key']}"}, timeout=30
            )
        return self.clients[name]


@pytest.fixture(scope="module")
def people(engine: Engine) -> People:
    return People(engine)


def start(engine: Engine, plan: dict[str, Any]) -> str:
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def gate_of(
    engine: Engine, eid: str, status: str = "pending", timeout: float = 60
) -> dict[str, Any]:
    """The execution's gate, once the inbox shows it in ``status``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = engine.http.get(
            f"{engine.url}/v1/approvals", params={"execution": eid, "status": status}
        ).json()["items"]
        if items:
            return dict(items[0])
        time.sleep(0.1)
    raise AssertionError(f"no {status} gate for {eid} within {timeout}s")


def decide(
    client: httpx.Client, engine: Engine, gate: dict[str, Any], **body: Any
) -> httpx.Response:
    return client.post(f"{engine.url}/v1/approvals/{gate['id']}/decision", json=body)


def test_approve_runs_the_gated_step_once_and_nothing_before_it_again(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    eid = start(engine, gated_plan(ledger, {"message": "post for ${steps.before.output.status}?"}))
    gate = gate_of(engine, eid)
    view = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()
    assert view["steps"]["gated"]["status"] == "waiting_approval"
    assert view["steps"]["gated"]["approval"]["id"] == gate["id"]
    assert gate["message"] == "post for 200?" and gate["tool"] == "http.request"
    assert gate["input"]["json"] == {"call": "gated"}  # the resolved input the person sees
    assert ledger.paths() == ["/before"]
    resp = decide(people("ann"), engine, gate, decision="approve", comment="fine")
    assert resp.status_code == 200, resp.text
    assert engine.wait(eid)["status"] == "succeeded"
    assert ledger.paths() == ["/before", "/gated", "/after"]  # each once, in order
    types = [
        e["type"]
        for e in engine.http.get(f"{engine.url}/v1/executions/{eid}/events").json()["items"]
    ]
    assert "execution.approval_requested" in types and "approval.granted" in types
    again = decide(people("ann"), engine, gate, decision="approve")
    assert again.status_code == 409  # a closed gate


def test_reject_fails_the_step_for_good_and_compensates_in_reverse_once(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    plan = gated_plan(ledger)
    plan["steps"].insert(
        1,
        {"id": "second", **post(ledger, "second"), "depends_on": ["before"],
         "compensate": undo(ledger, "second")},
    )  # fmt: skip
    plan["steps"][2]["depends_on"] = ["second"]
    plan["steps"][2]["retry"] = {"max_attempts": 5}
    eid = start(engine, plan)
    gate = gate_of(engine, eid)
    resp = decide(people("ann"), engine, gate, decision="reject", comment="wrong account")
    assert resp.status_code == 200, resp.text
    view = engine.wait(eid)
    assert view["status"] == "failed" and "wrong account" in view["error"]
    assert view["steps"]["gated"]["attempts"] == 0  # never ran, never retried
    assert ledger.paths() == ["/before", "/second", "/undo-second", "/undo-before"]
    assert gate_of(engine, eid, "rejected")["status"] == "rejected"


def test_edit_runs_the_edited_input_and_keeps_both_in_the_history(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    eid = start(engine, gated_plan(ledger))
    gate = gate_of(engine, eid)
    edited = {**gate["input"], "json": {"call": "gated", "amount": 5}}
    bad = decide(
        people("ann"), engine, gate, decision="edit", input={**gate["input"], "method": "FETCH"}
    )
    assert bad.status_code == 422 and "method" in bad.json()["detail"]
    assert gate_of(engine, eid)["status"] == "pending"  # a bad edit leaves the gate open
    resp = decide(people("ann"), engine, gate, decision="edit", input=edited, comment="only 5")
    assert resp.status_code == 200, resp.text
    assert engine.wait(eid)["status"] == "succeeded"
    assert ledger.body_of("gated") == {"call": "gated", "amount": 5}
    granted = gate_of(engine, eid, "granted")
    assert granted["decided_input"]["json"] == {"call": "gated", "amount": 5}
    assert granted["input"]["json"] == {"call": "gated"}  # the original, for the diff


@pytest.mark.parametrize(
    ("on_timeout", "outcome"), [("reject", "failed"), ("approve", "succeeded")]
)
def test_a_deadline_applies_its_policy_once(
    engine: Engine, ledger: Ledger, on_timeout: str, outcome: str
) -> None:
    eid = start(engine, gated_plan(ledger, {"deadline": 1, "on_timeout": on_timeout}))
    view = engine.wait(eid, timeout=60)
    assert view["status"] == outcome, view
    assert ledger.count("gated") == (1 if on_timeout == "approve" else 0)
    history = [
        h["type"]
        for h in gate_of(engine, eid, "granted" if on_timeout == "approve" else "rejected")[
            "history"
        ]
    ]
    assert history.count("approval.expired") == 1


def test_escalation_asks_others_after_the_deadline(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    policy = {
        "approvers": ["ann"],
        "deadline": 1,
        "on_timeout": "escalate",
        "escalate_to": ["boss"],
        "escalation_deadline": 120,
    }
    eid = start(engine, gated_plan(ledger, policy))
    deadline = time.monotonic() + 60
    while not (gate := gate_of(engine, eid)).get("escalated"):
        assert time.monotonic() < deadline, gate
        time.sleep(0.1)
    assert gate["approvers"] == ["boss"]
    assert decide(people("ann"), engine, gate, decision="approve").status_code == 403
    assert decide(people("boss"), engine, gate, decision="approve").status_code == 200
    assert engine.wait(eid)["status"] == "succeeded"


def test_two_approvals_are_two_people(engine: Engine, ledger: Ledger, people: People) -> None:
    eid = start(engine, gated_plan(ledger, {"min_approvals": 2}))
    gate = gate_of(engine, eid)
    assert decide(people("ann"), engine, gate, decision="approve").status_code == 200
    assert decide(people("ann"), engine, gate, decision="approve").status_code == 409
    assert gate_of(engine, eid)["status"] == "pending" and ledger.count("gated") == 0
    assert decide(people("bob"), engine, gate, decision="approve").status_code == 200
    assert engine.wait(eid)["status"] == "succeeded"
    assert {v["user"] for v in gate_of(engine, eid, "granted")["votes"]} == {"ann", "bob"}


def test_who_may_decide_and_bad_decisions(engine: Engine, ledger: Ledger, people: People) -> None:
    eid = start(engine, gated_plan(ledger, {"approvers": ["ann", "admin"]}))
    gate = gate_of(engine, eid)
    url = f"{engine.url}/v1/approvals"
    operator = people("olga", "operator")
    assert decide(operator, engine, gate, decision="approve").status_code == 403
    assert decide(people("bob"), engine, gate, decision="approve").status_code == 403
    assert (
        people("bob").post(f"{url}/{gate['id']}/decision", json={"decision": "maybe"}).status_code
        == 422
    )
    assert (
        people("bob").post(f"{url}/{gate['id']}/decision", json={"decision": "edit"}).status_code
        == 422
    )
    missing = "00000000-0000-4000-8000-000000000000"
    assert decide(people("ann"), engine, {"id": missing}, decision="approve").status_code == 404
    assert engine.http.get(f"{url}/{missing}").status_code == 404
    other = engine.http.post(
        f"{engine.url}/v1/workspaces", json={"name": f"gates {eid[:6]}"}
    ).json()
    key = engine.http.post(
        f"{engine.url}/v1/workspaces/{other['id']}/keys", json={"role": "owner"}
    ).json()
    stranger = httpx.Client(headers={"Authorization": f"Bearer {key['key']}"})
    assert decide(stranger, engine, gate, decision="approve").status_code == 404
    assert stranger.get(f"{url}/{gate['id']}").status_code == 404
    assert decide(people("ann"), engine, gate, decision="approve").status_code == 200
    assert engine.wait(eid)["status"] == "succeeded"


def test_a_bad_approval_policy_is_refused_at_validation(engine: Engine) -> None:
    plan = {"steps": [{"id": "x", "tool": "mock.agent", "approval": {"deadline": -1}}]}
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 422
    assert resp.json()["problems"][0]["step"] == "x" and "approval.deadline" in resp.text


def test_cancel_closes_an_open_gate(engine: Engine, ledger: Ledger, people: People) -> None:
    eid = start(engine, gated_plan(ledger))
    gate = gate_of(engine, eid)
    engine.http.post(f"{engine.url}/v1/executions/{eid}/cancel", json={"reason": "not today"})
    assert engine.wait(eid)["status"] == "cancelled"
    assert gate_of(engine, eid, "cancelled")["status"] == "cancelled"
    assert decide(people("ann"), engine, gate, decision="approve").status_code == 409
    assert ledger.paths() == ["/before", "/undo-before"]


@pytest.mark.parametrize("victim", ["hitl", "executor"])
def test_kill_9_while_a_gate_is_open_loses_nothing(
    engine: Engine, ledger: Ledger, people: People, victim: str
) -> None:
    eid = start(engine, gated_plan(ledger, {"deadline": 3600}))
    gate = gate_of(engine, eid)
    os.kill(engine.runtime()["pids"][victim], signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:  # the supervisor restarts it; a decision then goes through exactly once
        resp = decide(people("ann"), engine, gate, decision="approve")
        if resp.status_code == 200:
            break
        assert resp.status_code == 503 and time.monotonic() < deadline, resp.text
        time.sleep(0.5)
    assert engine.wait(eid, timeout=90)["status"] == "succeeded"
    assert ledger.paths() == ["/before", "/gated", "/after"]


def test_a_plan_review_holds_everything_and_runs_the_edited_plan(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    plan = {
        "approval": {"plan": True, "message": "ok to run?"},
        "steps": [{"id": "one", **post(ledger, "one")}],
    }
    eid = start(engine, plan)
    gate = gate_of(engine, eid)
    assert gate["tool"] == "baton.plan" and gate["message"] == "ok to run?"
    assert (
        engine.http.get(f"{engine.url}/v1/executions/{eid}").json()["plan_review"]["status"]
        == "pending"
    )
    assert ledger.paths() == []
    broken = {"plan": {"steps": [{"id": "x", "tool": "nope"}]}}
    bad = decide(people("ann"), engine, gate, decision="edit", input=broken)
    assert bad.status_code == 422 and "unknown tool 'nope'" in bad.json()["detail"]
    edited = {"plan": {"steps": [{"id": "two", **post(ledger, "two")}]}}
    assert decide(people("ann"), engine, gate, decision="edit", input=edited).status_code == 200
    view = engine.wait(eid)
    assert view["status"] == "succeeded" and list(view["steps"]) == ["two"]
    assert ledger.paths() == ["/two"]


def test_a_request_in_words_can_ask_for_its_drafted_plan_to_be_reviewed(
    engine: Engine, people: People
) -> None:
    resp = engine.http.post(
        f"{engine.url}/v1/executions",
        json={"request": "summarise incidents for payments and search", "review_plan": True},
    )
    eid = resp.json()["id"]
    gate = gate_of(engine, eid)
    drafted = gate["input"]["plan"]["steps"]
    assert (
        len(drafted) >= 2 and engine.http.get(f"{engine.url}/v1/executions/{eid}").json()["steps"]
    )
    assert (
        decide(people("ann"), engine, gate, decision="reject", comment="not now").status_code == 200
    )
    view = engine.wait(eid)
    assert view["status"] == "failed" and "not now" in view["error"]
    assert all(s["attempts"] == 0 for s in view["steps"].values())
