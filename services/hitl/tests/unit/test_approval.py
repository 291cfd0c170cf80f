"""The Approval aggregate's rules: votes, quorum, edits, deadlines, escalation, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from baton_common import contracts as c
from baton_common.approvals import DecisionRequest, approval_id_for
from baton_common.errors import ServiceError
from baton_common.testing import gate_requested
from baton_hitl.domain import Approval, timer_id

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
INPUT = {"url": "https://example.com/deploy", "method": "POST"}


def requested(policy: dict[str, Any] | None = None, **fields: Any) -> c.StepApprovalRequested:
    return gate_requested(INPUT, policy, **fields)


def opened(policy: dict[str, Any] | None = None) -> Approval:
    request = requested(policy)
    gate = Approval(request.approval_id)
    gate.open(request, NOW)
    return gate


def decision(
    gate: Approval, user: str, verdict: str = "approve", role: str = "approver", **fields: Any
) -> DecisionRequest:
    return DecisionRequest(
        approval_id=str(gate.id),
        workspace_id="acme",
        user=user,
        role=role,
        decision=verdict,  # type: ignore[arg-type]
        **fields,
    )


def refused(gate: Approval, request: DecisionRequest) -> ServiceError:
    before = (gate.version, len(gate.pending), gate.view())
    with pytest.raises(ServiceError) as info:
        gate.decide(request, NOW)
    assert (gate.version, len(gate.pending), gate.view()) == before, "a refusal changes nothing"
    return info.value


def types(gate: Approval) -> list[str]:
    return [e.type for e in gate.collect()]


def test_opening_records_the_policy_the_deadline_and_its_timer() -> None:
    request = requested({"approvers": ["alice"], "deadline": "PT1M", "message": "ship it?"})
    gate = Approval(request.approval_id)
    gate.open(request, NOW)
    [event] = gate.collect()
    assert isinstance(event, c.ApprovalOpened)
    assert event.execution_id == request.aggregate_id and event.causation_id == request.event_id
    assert event.workspace_id == "acme" and event.correlation_id == request.aggregate_id
    assert event.approvers == ["alice"] and event.message == "ship it?"
    assert event.deadline_at == NOW + timedelta(minutes=1)
    [timer], cleared = gate.collect_timers()
    assert timer.timer_id == timer_id(gate.id, 1) and timer.due_at == NOW + timedelta(minutes=1)
    assert cleared == [] and gate.view()["status"] == "pending"


def test_no_deadline_no_timer() -> None:
    gate = opened()
    assert gate.collect_timers() == ([], []) and gate.deadline_at is None


def test_one_approval_grants_with_the_original_input_and_clears_the_timer() -> None:
    gate = opened({"deadline": 60})
    gate.collect(), gate.collect_timers()
    gate.decide(decision(gate, "alice", comment="ok"), NOW)
    voted, granted = gate.collect()
    assert isinstance(voted, c.ApprovalVoted) and voted.actor == "alice (approver)"
    assert isinstance(granted, c.ApprovalGranted)
    assert granted.input == INPUT and granted.original_input == INPUT and not granted.edited
    assert granted.by == ["alice"] and granted.comment == "ok" and not granted.automatic
    assert gate.collect_timers() == ([], [timer_id(gate.id, 1)])
    assert gate.status == "granted"


def test_min_approvals_counts_each_person_once() -> None:
    gate = opened({"min_approvals": 2})
    gate.decide(decision(gate, "alice"), NOW)
    assert types(gate) == ["approval.opened", "approval.voted"] and gate.status == "pending"
    error = refused(gate, decision(gate, "alice"))
    assert error.status == 409 and "alice has already approved" in error.detail
    gate.decide(decision(gate, "bob", role="admin"), NOW)
    assert types(gate) == ["approval.voted", "approval.granted"]
    assert gate.view()["decided_input"] == INPUT and gate.voters == ["alice", "bob"]


def test_edit_grants_the_last_edited_input() -> None:
    gate = opened({"min_approvals": 2})
    edited = {**INPUT, "url": "https://example.com/deploy?dry=1"}
    gate.decide(decision(gate, "alice", "edit", input=edited), NOW)
    gate.decide(decision(gate, "bob"), NOW)
    *_, granted = gate.collect()
    assert isinstance(granted, c.ApprovalGranted)
    assert granted.input == edited and granted.original_input == INPUT and granted.edited
    assert granted.by == ["alice", "bob"]


def test_an_edit_that_breaks_the_tools_schema_is_refused_naming_the_field() -> None:
    gate = opened()
    gate.collect()
    error = refused(gate, decision(gate, "alice", "edit", input={"url": "ftp://x"}))
    assert error.status == 422 and error.detail.startswith("input.url:")
    error = refused(gate, decision(gate, "alice", "edit", input={"method": "GET"}))
    assert error.status == 422 and "'url' is a required property" in error.detail
    assert gate.status == "pending"


def test_input_only_with_edit() -> None:
    gate = opened()
    assert refused(gate, decision(gate, "alice", "approve", input=INPUT)).status == 422


def test_reject_closes_the_gate_with_the_reason() -> None:
    gate = opened({"min_approvals": 2})
    gate.decide(decision(gate, "alice"), NOW)
    gate.decide(decision(gate, "bob", "reject"), NOW)
    *_, rejected = gate.collect()
    assert isinstance(rejected, c.ApprovalRejected)
    assert rejected.reason == "rejected by bob" and rejected.by == ["bob"]
    assert not rejected.automatic and rejected.actor == "bob (approver)"
    with_comment = opened()
    with_comment.decide(decision(with_comment, "carol", "reject", comment="wrong env"), NOW)
    assert with_comment.collect()[-1].reason == "wrong env"  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", ["granted", "rejected", "cancelled"])
def test_a_closed_gate_refuses_every_decision_with_409(status: str) -> None:
    gate = opened()
    if status == "granted":
        gate.decide(decision(gate, "alice"), NOW)
    elif status == "rejected":
        gate.decide(decision(gate, "alice", "reject"), NOW)
    else:
        gate.cancel("execution cancelled", requested())
    for verdict in ("approve", "reject"):
        error = refused(gate, decision(gate, "zoe", verdict))
        assert error.status == 409 and status in error.detail


def test_who_may_decide_is_403_naming_them() -> None:
    gate = opened({"approvers": ["alice", "release-managers"]})
    error = refused(gate, decision(gate, "mallory"))
    assert error.status == 403 and "only alice, release-managers may decide" in error.detail
    gate.decide(decision(gate, "alice"), NOW)  # named
    by_role = opened({"approvers": ["admin"]})
    by_role.decide(decision(by_role, "dana", role="admin"), NOW)  # a named role
    anyone = opened()
    error = refused(anyone, decision(anyone, "vic", role="viewer"))
    assert error.status == 403 and "approver" in error.detail
    error = refused(anyone, decision(anyone, "olga", role="operator"))
    assert error.status == 403  # running things is not deciding them


def test_another_workspace_sees_404_not_403() -> None:
    gate = opened({"approvers": ["alice"]})
    request = decision(gate, "alice").model_copy(update={"workspace_id": "other"})
    assert refused(gate, request).status == 404


def deadline(gate: Approval, n: int = 1, at: datetime = NOW + timedelta(hours=1)) -> list[str]:
    gate.collect(), gate.collect_timers()
    gate.deadline_passed(n, at)
    return types(gate)


def test_on_timeout_reject() -> None:
    gate = opened({"deadline": 30})
    assert deadline(gate) == ["approval.expired", "approval.rejected"]
    expired, rejected = gate.history[-2:]
    assert expired["outcome"] == "reject"
    assert rejected["automatic"] and rejected["reason"] == "no decision within 30 s"
    assert gate.status == "rejected" and gate.view()["expired"]


def test_on_timeout_approve_grants_the_original_input_even_after_an_edit() -> None:
    gate = opened({"deadline": 30, "on_timeout": "approve", "min_approvals": 2})
    gate.decide(decision(gate, "alice", "edit", input={**INPUT, "method": "PUT"}), NOW)
    assert deadline(gate) == ["approval.expired", "approval.granted"]
    granted = gate.history[-1]
    assert granted["automatic"] and granted["input"] == INPUT and not granted["edited"]


def test_escalation_asks_others_with_a_new_deadline_then_rejects() -> None:
    policy = {"deadline": 30, "on_timeout": "escalate", "escalate_to": ["cto"],
              "escalation_deadline": "PT2M"}  # fmt: skip
    gate = opened(policy)
    at = NOW + timedelta(seconds=31)
    assert deadline(gate, 1, at) == ["approval.expired", "approval.escalated"]
    assert gate.history[-2]["outcome"] == "escalate"
    [timer], cleared = gate.collect_timers()
    assert cleared == []  # the fired timer is cleared by whoever fired it
    assert timer.timer_id == timer_id(gate.id, 2) and timer.due_at == at + timedelta(minutes=2)
    assert gate.approvers == ["cto"] and gate.status == "pending" and gate.escalated
    assert refused(gate, decision(gate, "alice")).status == 403  # no longer an approver
    gate.deadline_passed(1, at)  # a stale first deadline does nothing
    assert gate.collect() == []
    assert deadline(gate, 2) == ["approval.expired", "approval.rejected"]
    assert gate.history[-2]["outcome"] == "reject"
    assert gate.history[-1]["reason"] == "no decision within 2 min"


def test_escalated_gate_can_still_be_approved_by_the_new_approvers() -> None:
    gate = opened({"deadline": 5, "on_timeout": "escalate", "escalate_to": ["cto"]})
    deadline(gate)
    gate.decide(decision(gate, "cto", role="admin"), NOW)
    assert types(gate)[-1] == "approval.granted"


def test_a_deadline_after_the_decision_does_nothing() -> None:
    gate = opened({"deadline": 30})
    gate.decide(decision(gate, "alice"), NOW)
    assert deadline(gate) == []


def test_cancel_closes_an_open_gate_once() -> None:
    gate = opened({"deadline": 30})
    gate.collect(), gate.collect_timers()
    cause = requested()
    gate.cancel("execution cancelled", cause)
    [cancelled] = gate.collect()
    assert isinstance(cancelled, c.ApprovalCancelled) and cancelled.causation_id == cause.event_id
    assert gate.collect_timers() == ([], [timer_id(gate.id, 1)])
    gate.cancel("again", cause)
    assert gate.collect() == []


def test_an_invalid_policy_opens_and_rejects_at_once() -> None:
    request = requested({"on_timeout": "escalate", "deadline": 10})  # no escalate_to
    gate = Approval(request.approval_id)
    gate.open(request, NOW)
    assert types(gate) == ["approval.opened", "approval.rejected"]
    assert "escalate_to" in gate.history[-1]["reason"] and gate.history[-1]["automatic"]
    assert gate.collect_timers() == ([], [])


def test_a_rebuild_lands_on_the_same_gate() -> None:
    gate = opened({"deadline": 30, "on_timeout": "escalate", "escalate_to": ["cto"],
                   "min_approvals": 2})  # fmt: skip
    gate.decide(decision(gate, "alice"), NOW)
    events = gate.collect()
    gate.deadline_passed(1, NOW + timedelta(seconds=40))
    events += gate.collect()
    rebuilt = Approval.rebuild(gate.id, events)
    assert rebuilt is not None and rebuilt.view() == gate.view()
    assert rebuilt.deadlines == 2 and rebuilt.version == gate.version


def test_approval_ids_are_per_step() -> None:
    execution = UUID(int=7)
    assert approval_id_for(execution, "a") != approval_id_for(execution, "b")


# --- the planner's questions ------------------------------------------------------------------------


def asked(deadline: float | None = 60) -> Approval:
    from baton_common.approvals import question_id_for

    execution = uuid4()
    question = c.PlanQuestionAsked(
        aggregate_id=execution,
        aggregate_version=1,
        workspace_id="acme",
        execution_id=execution,
        approval_id=question_id_for(execution, 1),
        question="What should be done for 'frobnicate it'?",
        understood=["'read notes.md' → files.read"],
        not_understood=["'frobnicate it' (no tool fits)"],
        choices=[{"task": "frobnicate it", "tool": "llm.generate", "description": "…"}],
        deadline=deadline,
        planner="offline",
        request="read notes.md and then frobnicate it",
    )
    gate = Approval(question.approval_id)
    gate.ask(question, NOW)
    return gate


def test_a_question_opens_a_gate_of_kind_question_that_is_answered_in_words() -> None:
    gate = asked()
    [opened_event] = gate.pending
    assert isinstance(opened_event, c.ApprovalOpened) and opened_event.kind == "question"
    assert gate.view()["input"]["not_understood"] == ["'frobnicate it' (no tool fits)"]
    [timer], _ = gate.collect_timers()
    assert timer.due_at == NOW + timedelta(seconds=60)
    gate.decide(decision(gate, "ann", "answer", answer=" summarise it "), NOW)
    answered = gate.pending[-1]
    assert isinstance(answered, c.ApprovalAnswered) and answered.answer == "summarise it"
    assert gate.status == "answered" and gate.view()["answer"] == "summarise it"
    assert gate.collect_timers()[1] == [timer.timer_id]


def test_a_question_is_answered_or_declined_and_only_a_question_is_answered() -> None:
    gate = asked()
    assert refused(gate, decision(gate, "ann", "approve")).status == 422
    assert refused(gate, decision(gate, "ann", "answer", answer="  ")).status == 422
    assert refused(gate, decision(gate, "eve", "answer", answer="x", role="viewer")).status == 403
    step = opened()
    assert refused(step, decision(step, "ann", "answer", answer="yes")).status == 422
    gate.decide(decision(gate, "ann", "reject", comment="not now"), NOW)
    assert gate.status == "rejected"


def test_an_unanswered_question_is_rejected_at_its_deadline_saying_so() -> None:
    gate = asked(deadline=2)
    gate.deadline_passed(1, NOW + timedelta(seconds=2))
    rejected = gate.pending[-1]
    assert isinstance(rejected, c.ApprovalRejected) and rejected.automatic
    assert rejected.reason == "no answer within 2 s"
