"""Questions, not dead ends, on the engine as processes: a request the planner cannot plan waits
with a question (its view shows it, the inbox lists it); the answer, over the API, the CLI or
`baton run`'s prompt, completes the plan and the execution runs; the next time the same words
are planned without a question; with no answer by the deadline the execution fails saying so."""

from __future__ import annotations

import secrets
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import pytest
from baton_common.testing import wait_until

from tests.e2e.test_approvals import Terminal

pytestmark = pytest.mark.e2e


def unclear() -> str:
    """A request with a task no tool fits, in words no other test uses (learning keeps them)."""
    return (
        f"write 'hi {secrets.token_hex(3)}' to q-{secrets.token_hex(4)}.txt and then frobnicate it"
    )


def asked(engine: Engine, text: str) -> tuple[str, dict[str, Any]]:
    """Request ``text``; the execution's id and its view once it waits with a question."""
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"request": text})
    assert resp.status_code == 202, resp.text
    eid = resp.json()["id"]
    view = engine.wait(eid, until=("waiting", "failed", "succeeded"))
    assert view["status"] == "waiting", view
    return eid, view


def gate(engine: Engine, approval_id: str) -> dict[str, Any]:
    """The question's gate, once the inbox shows it."""

    def found() -> dict[str, Any] | None:
        resp = engine.http.get(f"{engine.url}/v1/approvals/{approval_id}")
        return resp.json() if resp.status_code == 200 else None

    return wait_until(found, 30, "the question in the approvals inbox")  # type: ignore[no-any-return]


def test_a_question_answered_over_the_api_plans_runs_and_is_learned(engine: Engine) -> None:
    text = unclear()
    eid, view = asked(engine, text)
    question = view["question"]
    assert question["status"] == "pending" and question["round"] == 1 and not view["steps"]
    assert "frobnicate" in question["question"] and "frobnicate" in question["not_understood"][0]
    assert question["understood"] and "files.write" in question["understood"][0]
    assert question["choices"] and question["choices"][0]["description"]
    inbox = gate(engine, question["id"])
    assert inbox["kind"] == "question" and inbox["status"] == "pending" and inbox["deadline_at"]
    pending = engine.http.get(f"{engine.url}/v1/approvals", params={"execution": eid}).json()
    assert [a["id"] for a in pending["items"]] == [question["id"]]
    url = f"{engine.url}/v1/approvals/{question['id']}/decision"
    wrong = engine.http.post(url, json={"decision": "approve"})
    assert wrong.status_code == 422 and "answer it" in wrong.json()["detail"]
    empty = engine.http.post(url, json={"decision": "answer", "answer": ""})
    assert empty.status_code == 422, empty.text
    answered = engine.http.post(url, json={"decision": "answer", "answer": "summarise it"})
    assert answered.status_code == 200, answered.text
    assert answered.json()["approval"]["status"] == "answered"
    done = engine.wait(eid)
    assert done["status"] == "succeeded", done
    assert sorted(s["tool"] for s in done["steps"].values()) == ["files.write", "llm.generate"]
    assert done["question"]["status"] == "answered" and done["question"]["answer"] == "summarise it"
    assert done["request"] == text
    again = engine.http.post(url, json={"decision": "answer", "answer": "twice"})
    assert again.status_code == 409, again.text
    # Learning keeps it: the same words again are planned at once, without a question.
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"request": text})
    next_view = engine.wait(resp.json()["id"], until=("waiting", "failed", "succeeded"))
    assert next_view["status"] == "succeeded" and "question" not in next_view, next_view


def test_a_question_answered_from_the_cli_and_at_baton_runs_prompt(engine: Engine) -> None:
    eid, view = asked(engine, unclear())
    approval_id = view["question"]["id"]
    gate(engine, approval_id)
    listed = engine.cli("approvals", "--execution", eid)
    assert (
        listed.returncode == 0
        and approval_id in listed.stdout
        and "baton.question" in listed.stdout
    )
    status = engine.cli("status", eid)
    assert f"baton approvals answer {approval_id}" in status.stdout, status.stdout
    shown = engine.cli("approvals", "show", approval_id)
    assert "not understood: 'frobnicate it'" in shown.stdout, shown.stdout
    done = engine.cli("approvals", "answer", approval_id, "summarise it")
    assert done.returncode == 0, done.stderr
    assert engine.wait(eid)["status"] == "succeeded"
    term = Terminal(engine, "run", unclear(), env={})
    try:
        term.expect("your answer (empty: answer later):")
        term.type("summarise it")
        term.expect("answered: the planner plans again with it")
        term.expect("✔ succeeded in")
    finally:
        code = term.close()
    assert code == 0, term.seen


def test_a_declined_question_fails_the_execution_with_the_reason(engine: Engine) -> None:
    eid, view = asked(engine, "zzz qqq")
    gate(engine, view["question"]["id"])
    done = engine.cli("approvals", "reject", view["question"]["id"], "--comment", "never mind")
    assert done.returncode == 0, done.stderr
    failed = engine.wait(eid)
    assert failed["status"] == "failed" and failed["question"]["status"] == "rejected"
    assert failed["error"] == "planning failed: the planner's question was not answered: never mind"


def test_an_unanswered_question_fails_at_its_deadline(own_engine: Any) -> None:
    engine = own_engine({"BATON_PLAN_QUESTION_DEADLINE": "2"})
    eid, view = asked(engine, "zzz qqq")
    assert gate(engine, view["question"]["id"])["deadline_at"]
    failed = engine.wait(eid, timeout=60)
    assert failed["status"] == "failed", failed
    assert failed["error"] == (
        "planning failed: the planner's question was not answered: no answer within 2 s"
    )


def test_cancelling_a_waiting_execution_closes_its_question(engine: Engine) -> None:
    eid, view = asked(engine, "zzz qqq")
    approval_id = view["question"]["id"]
    gate(engine, approval_id)
    resp = engine.http.post(f"{engine.url}/v1/executions/{eid}/cancel", json={"reason": "moot"})
    assert resp.status_code == 202, resp.text
    assert engine.wait(eid)["status"] == "cancelled"
    closed = wait_until(
        lambda: (g := gate(engine, approval_id))["status"] == "cancelled" and g,
        30,
        "the question closed",
    )
    assert closed["status"] == "cancelled"
    url = f"{engine.url}/v1/approvals/{approval_id}/decision"
    late = engine.http.post(url, json={"decision": "answer", "answer": "say hello"})
    assert late.status_code == 409, late.text
