"""Approval gates on the engine as processes (gateway, executor, workers, hitl, projector):
approve, reject with compensation, edit, deadlines with each policy, escalation, two approvers,
the 403/404/409/422 answers, kill -9 of hitl and of the executor while a gate is open, and a
side-effect counter proving that nothing before a gate runs twice."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_common.testing import LocalHandler, serving

pytestmark = pytest.mark.e2e

BATON = str(Path(sys.executable).parent / "baton")


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


def test_a_rejection_runs_the_alternatives_when_the_policy_says_so(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    plan = gated_plan(ledger, {"alternatives_on_reject": True})
    plan["steps"][1]["alternatives"] = [post(ledger, "alt")]
    eid = start(engine, plan)
    gate = gate_of(engine, eid)
    resp = decide(people("ann"), engine, gate, decision="reject", comment="use the other one")
    assert resp.status_code == 200, resp.text
    view = engine.wait(eid)
    assert view["status"] == "succeeded", view
    gated = view["steps"]["gated"]
    assert gated["variant"] == 1 and gated["attempts"] == 1  # the alternative, once
    assert ledger.paths() == ["/before", "/alt", "/after"]  # the rejected call never ran
    assert gated["approval"]["status"] == "rejected"
    assert gated["approval"]["reason"] == "use the other one"


def events_of(engine: Engine, eid: str) -> list[dict[str, Any]]:
    return list(engine.http.get(f"{engine.url}/v1/executions/{eid}/events").json()["items"])


def wait_event(engine: Engine, eid: str, type_: str, timeout: float = 60) -> dict[str, Any]:
    """The execution's first event of ``type_``, once the history has it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in events_of(engine, eid) if e["type"] == type_]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no {type_} in {eid}'s history within {timeout}s")


def pause(engine: Engine, eid: str) -> None:
    resp = engine.http.post(f"{engine.url}/v1/executions/{eid}/pause", json={"reason": "hold"})
    assert resp.status_code == 202, resp.text
    wait_event(engine, eid, "execution.paused")


def resume(engine: Engine, eid: str) -> None:
    resp = engine.http.post(f"{engine.url}/v1/executions/{eid}/resume")
    assert resp.status_code == 202, resp.text


def dispatched(engine: Engine, eid: str) -> list[str]:
    """The steps (with their tool) the executor has started, in order."""
    return [
        f"{e['data']['step_id']}:{e['data']['tool']}"
        for e in events_of(engine, eid)
        if e["type"] in ("execution.step_dispatched", "execution.step_succeeded")
        and (e["type"] == "execution.step_dispatched" or e["data"].get("call"))
    ]


def decided_while_paused(engine: Engine, people: People, plan: dict[str, Any], **how: Any) -> str:
    """Start ``plan``, pause it at its open gate, and have ann decide ``how``: its id."""
    eid = start(engine, plan)
    gate = gate_of(engine, eid)
    pause(engine, eid)
    assert decide(people("ann"), engine, gate, **how).status_code == 200
    return eid


def resumed_once_nothing_ran(engine: Engine, ledger: Ledger, eid: str) -> dict[str, Any]:
    """The decided gate's step waits while the execution is paused (nothing of it has run);
    then the execution is resumed: its final view."""
    view = engine.http.get(f"{engine.url}/v1/executions/{eid}").json()
    assert view["status"] == "paused" and view["steps"]["gated"]["status"] == "pending"
    assert ledger.paths() == ["/before"] and not any(
        d.startswith("gated:") for d in dispatched(engine, eid)
    )
    resume(engine, eid)
    return engine.wait(eid)


def test_an_approval_while_paused_runs_the_step_only_after_resume(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    eid = decided_while_paused(engine, people, gated_plan(ledger), decision="approve")
    wait_event(engine, eid, "execution.step_approved")  # the executor has taken the decision
    assert resumed_once_nothing_ran(engine, ledger, eid)["status"] == "succeeded"
    assert ledger.paths() == ["/before", "/gated", "/after"]


def test_a_rejection_while_paused_runs_the_alternative_only_after_resume(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    plan = gated_plan(ledger, {"alternatives_on_reject": True})
    plan["steps"][1]["alternatives"] = [post(ledger, "alt")]
    eid = decided_while_paused(engine, people, plan, decision="reject")
    failed = wait_event(engine, eid, "execution.step_failed")
    assert failed["data"]["next_variant"] == 1
    assert resumed_once_nothing_ran(engine, ledger, eid)["status"] == "succeeded"
    assert ledger.paths() == ["/before", "/alt", "/after"]


def test_a_rejection_for_good_while_paused_fails_and_compensates_at_once(
    engine: Engine, ledger: Ledger, people: People
) -> None:
    eid = decided_while_paused(engine, people, gated_plan(ledger), decision="reject", comment="no")
    view = engine.wait(eid)  # no resume: the execution is over, as a cancel would end it
    assert view["status"] == "failed" and "no" in view["error"]
    assert ledger.paths() == ["/before", "/undo-before"]


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


def kill_the_whole_engine(engine: Engine) -> None:
    """kill -9 of every process of the engine: the supervisor first (so nothing is restarted),
    each service with whatever it started, nats-server, and PostgreSQL with its backends; back
    when every one is gone."""
    runtime = engine.runtime()
    postmaster = runtime["servers"]["postgres"]
    backends = _children(postmaster)  # read now: once orphaned they are no longer its children
    os.kill(runtime["supervisor"], signal.SIGKILL)
    for pid in runtime["pids"].values():
        os.killpg(pid, signal.SIGKILL)  # each service leads its own session
    victims = [runtime["supervisor"], *runtime["pids"].values(), *runtime["servers"].values()]
    for pid in [*runtime["servers"].values(), *backends]:
        _kill(pid)
    engine.proc.wait(30)
    deadline = time.monotonic() + 60
    while alive := [p for p in [*victims, *backends] if _alive(p)]:
        assert time.monotonic() < deadline, f"still running after kill -9: {alive}"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its new parent, holds nothing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_kill_9_of_the_whole_engine_with_gates_open_then_decisions_and_deadlines_after_restart(
    own_engine: Any, ledger: Ledger
) -> None:
    """Every process of the engine killed with three gates open: one waits for a person, two have
    deadlines that pass while nothing runs. After a restart on the same data, the person decides,
    the deadlines act as their policies say, and every call happens once."""
    first = own_engine()
    ann, boss = People(first)("ann"), People(first)("boss")
    lapse = 10  # seconds: long enough to open the gates before the kill, short for CI
    submitted = time.monotonic()
    held = start(first, gated_plan(ledger, {"deadline": 3600}))
    approve_late = start(first, {"steps": [
        {"id": "late", **post(ledger, "late"), "approval": {"deadline": lapse, "on_timeout": "approve"}}
    ]})  # fmt: skip
    escalate = start(first, {"steps": [
        {"id": "esc", **post(ledger, "esc"), "approval": {
            "deadline": lapse, "on_timeout": "escalate", "escalate_to": ["boss"],
            "escalation_deadline": 3600}}
    ]})  # fmt: skip
    gates = {eid: gate_of(first, eid) for eid in (held, approve_late, escalate)}
    kill_the_whole_engine(first)
    # The two deadlines are at least `lapse` after the submit: still ahead at the kill...
    assert time.monotonic() < submitted + lapse, "the gates took too long to open: no test"
    while time.monotonic() < submitted + lapse + 2:  # ...and past before anything restarts
        time.sleep(0.2)
    assert ledger.paths() == ["/before"]

    second = own_engine({"BATON_API_TOKEN": first.token}, first.data_dir)
    deadline = time.monotonic() + 90
    while (resp := decide(ann, second, gates[held], decision="approve")).status_code != 200:
        assert resp.status_code == 503 and time.monotonic() < deadline, resp.text
        time.sleep(0.5)
    assert second.wait(held, timeout=90)["status"] == "succeeded"
    late = second.wait(approve_late, timeout=90)  # its deadline fired after the restart
    assert late["status"] == "succeeded" and late["steps"]["late"]["approval"]["automatic"]
    gate = gate_of(second, escalate, timeout=90)
    while not gate.get("escalated"):
        assert time.monotonic() < deadline, gate
        time.sleep(0.2)
        gate = gate_of(second, escalate)
    assert gate["approvers"] == ["boss"]
    assert decide(boss, second, gate, decision="approve").status_code == 200
    assert second.wait(escalate, timeout=90)["status"] == "succeeded"
    assert sorted(ledger.paths()) == ["/after", "/before", "/esc", "/gated", "/late"]  # once each
    for eid, outcome in ((approve_late, "granted"), (escalate, "granted")):
        history = [h["type"] for h in gate_of(second, eid, outcome)["history"]]
        assert history.count("approval.expired") == 1, history


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


# --- the CLI: `baton approvals …` and `baton run`'s prompt, as a user runs them ----------------


@pytest.fixture
def baton(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:
    """``baton(*args, env=…)``: the CLI's main in this process, as the default workspace's owner
    of the engine (a subprocess per command costs seconds of start-up under load)."""
    from baton_cli.main import main

    monkeypatch.setenv("BATON_URL", engine.url)
    monkeypatch.setenv("BATON_API_TOKEN", engine.token)
    monkeypatch.delenv("BATON_API_KEY", raising=False)

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        with monkeypatch.context() as scoped:
            for name, value in (env or {}).items():
                scoped.setenv(name, value)
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["baton", *args], code, out, err)

    return run


def test_the_cli_lists_shows_and_decides_gates(engine: Engine, ledger: Ledger, baton: Any) -> None:
    approve, reject = (start(engine, gated_plan(ledger, {"message": "ok?"})) for _ in range(2))
    gates = {eid: gate_of(engine, eid) for eid in (approve, reject)}
    listed = baton("approvals", "--execution", approve)
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    assert line.split()[:3] == [gates[approve]["id"], "pending", "gated"]
    shown = baton("approvals", "show", gates[approve]["id"])
    assert shown.returncode == 0 and "ok?" in shown.stdout and '"call": "gated"' in shown.stdout
    as_json = json.loads(baton("approvals", "show", gates[approve]["id"], "--json").stdout)
    assert as_json["execution_id"] == approve and as_json["status"] == "pending"
    done = baton("approvals", "approve", gates[approve]["id"], "--comment", "fine")
    assert done.returncode == 0 and "the gate is granted" in done.stdout, done.stderr
    no = baton("approvals", "reject", gates[reject]["id"], "--comment", "wrong day")
    assert no.returncode == 0 and "the gate is rejected" in no.stdout, no.stderr
    assert engine.wait(approve)["status"] == "succeeded"
    failed = engine.wait(reject)
    assert failed["status"] == "failed" and "wrong day" in failed["error"]
    assert ledger.count("gated") == 1
    again = baton("approvals", "approve", gates[approve]["id"])
    assert again.returncode == 2 and again.stderr.startswith("baton: 409"), again.stderr
    empty = baton("approvals", "--execution", approve)
    assert empty.stdout.strip() == "no approvals pending"
    granted = baton("approvals", "--status", "granted", "--execution", approve)
    assert gates[approve]["id"] in granted.stdout
    missing = baton("approvals", "show", "00000000-0000-4000-8000-000000000000")
    assert missing.returncode == 2 and missing.stderr.startswith("baton: 404")


def test_the_cli_edits_with_input_or_in_the_editor(
    engine: Engine, ledger: Ledger, baton: Any
) -> None:
    typed, in_editor = (start(engine, gated_plan(ledger)) for _ in range(2))
    gate = gate_of(engine, typed)
    bad_json = baton("approvals", "edit", gate["id"], "--input", "{amount: 5")
    assert bad_json.returncode == 2 and "--input is not JSON" in bad_json.stderr
    wrong = {**gate["input"], "method": "FETCH"}
    refused = baton("approvals", "edit", gate["id"], "--input", json.dumps(wrong))
    assert refused.returncode == 2 and refused.stderr.startswith("baton: 422: input.method")
    no_editor = baton("approvals", "edit", gate["id"], env={"EDITOR": "", "VISUAL": ""})
    assert no_editor.returncode == 2 and "--input" in no_editor.stderr
    assert gate_of(engine, typed)["status"] == "pending"  # nothing above decided anything
    edited = {**gate["input"], "json": {"call": "gated", "amount": 5}}
    done = baton("approvals", "edit", gate["id"], "--input", json.dumps(edited))
    assert done.returncode == 0, done.stderr
    assert engine.wait(typed)["status"] == "succeeded"
    assert ledger.body_of("gated") == {"call": "gated", "amount": 5}
    # No --input: the gate's input opens in $EDITOR (here a sed that changes the body).
    gate = gate_of(engine, in_editor)
    sed = 's/"call": "gated"/"call": "gated", "edited": true/'
    done = baton("approvals", "edit", gate["id"], env={"EDITOR": f"sed -i '{sed}'", "VISUAL": ""})
    assert done.returncode == 0, done.stderr
    assert engine.wait(in_editor)["status"] == "succeeded"
    granted = gate_of(engine, in_editor, "granted")
    assert granted["decided_input"]["json"] == {"call": "gated", "edited": True}


class Terminal:
    """A command on a pseudo-terminal, so it prompts as it does for a person."""

    def __init__(self, engine: Engine, *args: str, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [BATON, *args], stdin=slave, stdout=slave, stderr=slave, env={**engine.env, **env}
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            assert time.monotonic() < deadline, f"no {text!r} in:\n{self.seen}"
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the command ended
                    assert text in self.seen, f"no {text!r} in:\n{self.seen}"
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> int:
        code = self.proc.wait(60)
        os.close(self.master)
        return code


def test_baton_run_offers_edit_at_its_prompt(engine: Engine, ledger: Ledger, tmp_path: Any) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(gated_plan(ledger)))
    term = Terminal(engine, "run", "--plan", str(plan), env={"EDITOR": "", "VISUAL": ""})
    try:
        term.expect("[e]dit the input")
        term.type("e")
        term.expect("new input (JSON on one line):")
        term.type("{not json")
        term.expect("the new input is not JSON")
        term.expect("[e]dit the input")  # asked again: nothing was decided
        term.type("e")
        term.expect("new input (JSON on one line):")
        edited = {"url": ledger.url("gated"), "method": "POST", "json": {"amount": 7}}
        term.type(json.dumps({**edited, "method": "FETCH"}))  # the tool's schema refuses it
        term.expect("comment (optional):")
        term.type("")
        term.expect("not decided: 422")
        term.expect("[e]dit the input")  # the gate is still open: asked again
        term.type("e")
        term.expect("new input (JSON on one line):")
        term.type(json.dumps(edited))
        term.expect("comment (optional):")
        term.type("seven, not the default")
        term.expect("edited and approved")
        term.expect("✔ succeeded in")
    finally:
        code = term.close()
    assert code == 0, term.seen
    assert ledger.body_of("gated") == {"amount": 7}
    assert ledger.paths() == ["/before", "/gated", "/after"]
