"""The hitl application and its decision service on the in-memory store."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

from baton_common import contracts as c
from baton_common.approvals import (
    DecisionReply,
    DecisionRequest,
    asked_approval_id,
)
from baton_common.consumer import Delivery
from baton_common.kit.rpc import CallServer
from baton_common.store import Commit, MemoryEventStore
from baton_common.testing import gate_requested
from baton_hitl.application import HitlApp
from baton_hitl.domain import timer_id
from baton_hitl.rpc import Decisions

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
INPUT = {"url": "https://example.com/deploy", "method": "POST"}


def requested(policy: dict[str, Any] | None = None) -> c.StepApprovalRequested:
    return gate_requested(INPUT, policy)


def cancelled(request: c.StepApprovalRequested, step: str = "deploy") -> c.StepCancelled:
    return c.StepCancelled(
        aggregate_id=request.aggregate_id,
        aggregate_version=9,
        workspace_id="acme",
        step_id=step,
        reason="execution cancelled",
    )


def decision(
    request: c.StepApprovalRequested, user: str, verdict: str = "approve"
) -> DecisionRequest:
    return DecisionRequest(
        approval_id=str(request.approval_id),
        workspace_id="acme",
        user=user,
        role="approver",
        decision=verdict,  # type: ignore[arg-type]
    )


def opened(app: HitlApp, policy: dict[str, Any] | None = None) -> c.StepApprovalRequested:
    request = requested(policy)
    app.store.commit(app.handle([Delivery(request)], NOW))
    return request


def types(commit: Commit) -> list[str]:
    return [e.type for e in commit.events]


def test_a_request_opens_its_gate_once() -> None:
    app = HitlApp(MemoryEventStore("hitl"))
    request = requested({"deadline": 60})
    commit = app.handle([Delivery(request), Delivery(request)], NOW)  # twice in one batch
    assert types(commit) == ["approval.opened"]
    assert [t.timer_id for t in commit.timers_set] == [timer_id(request.approval_id, 1)]
    app.store.commit(commit)
    again = request.model_copy(update={"event_id": uuid4()})  # the executor asked again
    assert app.handle([Delivery(again)], NOW).events == []


def test_a_cancelled_step_closes_its_open_gate_and_clears_the_deadline() -> None:
    app = HitlApp(MemoryEventStore("hitl"))
    request = opened(app, {"deadline": 60})
    assert app.handle([Delivery(cancelled(request, "other_step"))], NOW).events == []
    commit = app.handle([Delivery(cancelled(request))], NOW)
    assert types(commit) == ["approval.cancelled"]
    assert commit.timers_clear == [timer_id(request.approval_id, 1)]
    app.store.commit(commit)
    assert app.handle([Delivery(cancelled(request))], NOW).events == []  # closed already


def test_decisions_commit_and_deadlines_fire_from_the_store() -> None:
    store = MemoryEventStore("hitl")
    app = HitlApp(store)
    request = opened(app, {"deadline": 30, "min_approvals": 2})
    commit, gate = app.decide(decision(request, "alice"), NOW)
    store.commit(commit)
    assert gate.status == "pending" and types(commit) == ["approval.voted"]
    assert store.due_timers(NOW, 10) == []
    due = store.due_timers(NOW + timedelta(seconds=31), 10)
    commit = app.fire(due, NOW + timedelta(seconds=31))
    assert types(commit) == ["approval.expired", "approval.rejected"]
    assert commit.timers_clear == [timer_id(request.approval_id, 1)]
    store.commit(commit)
    assert store.due_timers(NOW + timedelta(hours=1), 10) == []  # fired once, and gone
    loaded = app.load(request.approval_id)
    assert loaded is not None and loaded.status == "rejected"


def test_an_escalation_keeps_its_new_timer_and_clears_the_fired_one() -> None:
    store = MemoryEventStore("hitl")
    app = HitlApp(store)
    request = opened(app, {"deadline": 30, "on_timeout": "escalate", "escalate_to": ["cto"]})
    at = NOW + timedelta(seconds=31)
    commit = app.fire(store.due_timers(at, 10), at)
    store.commit(commit)
    assert types(commit) == ["approval.expired", "approval.escalated"]
    assert [t.timer_id for t in store.due_timers(at + timedelta(seconds=31), 10)] == [
        timer_id(request.approval_id, 2)
    ]


def server(app: HitlApp) -> CallServer[DecisionRequest, DecisionReply]:
    runtime = SimpleNamespace(relay=None, settings=SimpleNamespace(subject_root="t"))
    return Decisions(runtime, app, asyncio.Lock()).server()  # type: ignore[arg-type]


async def test_the_server_answers_with_statuses_and_the_gate() -> None:
    app = HitlApp(MemoryEventStore("hitl"))
    request = opened(app)
    s = server(app)
    reply = await s.answer(decision(request, "alice").model_dump_json().encode())
    assert reply.status == 200 and reply.approval is not None
    assert reply.approval["status"] == "granted" and reply.approval["votes"][0]["user"] == "alice"
    assert app.decision_seconds[1] == 1
    reply = await s.answer(decision(request, "bob").model_dump_json().encode())
    assert reply.status == 409
    unknown = decision(request, "alice").model_copy(update={"approval_id": str(uuid4())})
    assert (await s.answer(unknown.model_dump_json().encode())).status == 404
    garbage = decision(request, "alice").model_copy(update={"approval_id": "not-an-id"})
    assert (await s.answer(garbage.model_dump_json().encode())).status == 404
    assert (await s.answer(b"{not json")).status == 422
    body = json.dumps({"approval_id": str(request.approval_id), "decision": "maybe"}).encode()
    reply = await s.answer(body)
    assert reply.status == 422 and "decision" in reply.detail


class Racing(MemoryEventStore):
    """A store where another replica commits a decision just before this one's commit."""

    def __init__(self) -> None:
        super().__init__("hitl")
        self.competitor: Commit | None = None

    def commit(self, commit: Commit) -> list[tuple[int, bytes]]:
        first, self.competitor = self.competitor, None
        if first is not None:
            super().commit(first)
        return super().commit(commit)


async def test_a_lost_race_reloads_and_decides_again() -> None:
    store = Racing()
    app = HitlApp(store)
    request = opened(app, {"min_approvals": 2})
    store.competitor, _ = HitlApp(store).decide(decision(request, "bob"), NOW)
    reply = await server(app).answer(decision(request, "alice").model_dump_json().encode())
    assert reply.status == 200 and reply.approval is not None
    assert reply.approval["status"] == "granted"  # bob's vote (the other replica's) counted
    assert [v["user"] for v in reply.approval["votes"]] == ["bob", "alice"]

    request = opened(app)
    store.competitor, _ = HitlApp(store).decide(decision(request, "bob", "reject"), NOW)
    reply = await server(app).answer(decision(request, "alice").model_dump_json().encode())
    assert reply.status == 409 and "rejected" in reply.detail


def test_a_tools_question_opens_its_own_gate_with_context_and_is_closed_by_its_id() -> None:
    app = HitlApp(MemoryEventStore("hitl"))
    first = requested()
    app.store.commit(app.handle([Delivery(first)], NOW))
    asked_id = asked_approval_id(first.aggregate_id, "deploy", 2)
    context = {"conflicts": [{"title": "Sync", "calendar": "team"}], "count": 1}
    question = first.model_copy(
        update={"event_id": uuid4(), "approval_id": asked_id, "context": context}
    )
    commit = app.handle([Delivery(question)], NOW)  # the step's own gate is decided or not: apart
    app.store.commit(commit)
    [opened_event] = commit.events
    assert isinstance(opened_event, c.ApprovalOpened) and opened_event.context == context
    gate = app.load(asked_id)
    assert gate is not None and gate.view()["context"] == context
    closing = cancelled(first).model_copy(update={"approval_id": asked_id})
    assert [e.aggregate_id for e in app.handle([Delivery(closing)], NOW).events] == [asked_id]
