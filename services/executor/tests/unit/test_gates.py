"""Approval gates in the Execution aggregate: held before the tool, opened by a decision."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from baton_common import contracts as c
from baton_common.approvals import approval_id_for

from .test_execution import Harness

GATED = {
    "steps": [
        {"id": "book", "tool": "mock.agent", "input": {"task": "book room"},
         "compensate": {"tool": "mock.agent", "input": {"task": "unbook"}}},
        {"id": "pay", "tool": "mock.critical", "depends_on": ["book"],
         "input": {"action": "pay", "amount": 10, "target": "${steps.book.output.result}"},
         "approval": {"message": "pay for ${steps.book.output.result}?", "min_approvals": 2}},
        {"id": "notify", "tool": "mock.agent", "depends_on": ["pay"], "input": {"task": "tell"}},
    ]
}  # fmt: skip


def _gate(h: Harness) -> c.StepApprovalRequested:
    [gate] = [e for e in h.events if isinstance(e, c.StepApprovalRequested)]
    return gate


def _decided(h: Harness, eid: Any, event: type[c.Event], **fields: Any) -> list[Any]:
    gate = _gate(h)
    return h.feed(
        event(
            aggregate_id=gate.approval_id,
            aggregate_version=5,
            execution_id=eid,
            step_id=gate.step_id,
            **fields,
        )
    )


def _to_gate(h: Harness) -> Any:
    eid = h.start(GATED)
    [book] = h.dispatched()
    h.finish(book, output={"result": "room 7"})
    return eid


def test_a_critical_step_waits_at_its_gate_with_what_it_will_do() -> None:
    h = Harness()
    eid = _to_gate(h)
    gate = _gate(h)
    assert [d.step_id for d in h.dispatched()] == ["book"]  # nothing runs past the gate
    assert gate.approval_id == approval_id_for(eid, "pay")
    assert gate.input == {"action": "pay", "amount": 10, "target": "room 7"}
    assert gate.message == "pay for room 7?" and gate.reason == "mock.critical is a critical tool"
    assert gate.policy == {"min_approvals": 2, "message": "pay for ${steps.book.output.result}?"}


def test_an_edited_approval_runs_the_edited_input_once() -> None:
    h = Harness()
    eid = _to_gate(h)
    edited = {"action": "pay", "amount": 8, "target": "room 7"}
    _decided(h, eid, c.ApprovalGranted, input=edited, original_input=_gate(h).input, edited=True,
             by=["ann", "bob"])  # fmt: skip
    pay = h.dispatched()[-1]
    assert (pay.step_id, pay.input) == ("pay", edited)
    again = _decided(h, eid, c.ApprovalGranted, input=edited, original_input={}, by=["x"])
    assert again == []  # a second decision changes nothing
    h.finish(pay, output={"done": "paid"})
    [notify] = [d for d in h.dispatched() if d.step_id == "notify"]
    h.finish(notify)
    assert isinstance(h.events[-1], c.ExecutionSucceeded)
    assert [d.step_id for d in h.dispatched()].count("book") == 1  # nothing before the gate re-ran


def test_a_rejection_fails_the_step_for_good_and_compensates() -> None:
    h = Harness()
    eid = _to_gate(h)
    _decided(h, eid, c.ApprovalRejected, reason="too expensive", by=["ann"])
    failed = [e for e in h.events if isinstance(e, c.StepFailed)]
    assert failed[-1].final and "too expensive" in failed[-1].error
    undo = h.dispatched()[-1]
    assert (undo.step_id, undo.kind) == ("book", "compensate")
    h.finish(undo)
    assert isinstance(h.events[-1], c.ExecutionFailed)
    assert [d.step_id for d in h.dispatched() if d.kind == "run"] == ["book"]


def test_cancelling_closes_the_gate() -> None:
    h = Harness()
    eid = _to_gate(h)
    h.feed(c.ExecutionCancelRequested(aggregate_id=eid, aggregate_version=9, reason="no"))
    cancelled = [e for e in h.events if isinstance(e, c.StepCancelled)]
    assert [e.step_id for e in cancelled] == ["pay"]
    late = _decided(h, eid, c.ApprovalGranted, input={}, original_input={}, by=["ann"])
    assert not [e for e in late if isinstance(e, c.StepDispatched) and e.kind == "run"]


def test_a_failure_elsewhere_closes_an_open_gate() -> None:
    h = Harness()
    plan = {
        "steps": [
            {"id": "ask", "tool": "mock.agent", "requires_approval": True},
            {"id": "boom", "tool": "mock.agent", "retry": {"max_attempts": 1}},
        ]
    }
    h.start(plan)
    [boom] = h.dispatched()
    h.finish(boom, ok=False, retryable=False)
    assert [e.step_id for e in h.events if isinstance(e, c.StepCancelled)] == ["ask"]
    assert isinstance(h.events[-1], c.ExecutionFailed)


def test_a_rebuild_keeps_the_gate_state() -> None:
    h = Harness()
    eid = _to_gate(h)
    h.app.cache.clear()  # the next message finds the execution from its history
    _decided(h, eid, c.ApprovalGranted, input={"action": "pay"}, original_input={}, by=["a", "b"])
    assert h.dispatched()[-1].input == {"action": "pay"}
    assert uuid4() != eid


def test_a_plan_under_review_runs_nothing_until_approved_then_runs_the_edited_plan() -> None:
    from baton_common.approvals import PLAN_GATE

    h = Harness()
    plan = {"approval": {"plan": True}, "steps": [{"id": "a", "tool": "mock.agent"}]}
    eid = h.start(plan)
    gate = _gate(h)
    assert gate.step_id == PLAN_GATE and gate.tool == "baton.plan" and h.dispatched() == []
    edited = {"steps": [{"id": "b", "tool": "mock.agent", "input": {"task": "edited"}}]}
    h.feed(c.ApprovalGranted(aggregate_id=gate.approval_id, aggregate_version=3, execution_id=eid,
                             step_id=PLAN_GATE, input={"plan": edited}, original_input=gate.input,
                             edited=True, by=["ann"]))  # fmt: skip
    [run] = h.dispatched()
    assert (run.step_id, run.input) == ("b", {"task": "edited"})
    h.finish(run)
    assert isinstance(h.events[-1], c.ExecutionSucceeded)


def test_a_rejected_plan_fails_and_a_cancel_closes_its_review() -> None:
    from baton_common.approvals import PLAN_GATE

    h = Harness()
    plan = {"approval": {"plan": True}, "steps": [{"id": "a", "tool": "mock.agent"}]}
    eid = h.start(plan)
    gate = _gate(h)
    h.feed(c.ApprovalRejected(aggregate_id=gate.approval_id, aggregate_version=3, execution_id=eid,
                              step_id=PLAN_GATE, reason="not this way", by=["ann"]))  # fmt: skip
    assert isinstance(h.events[-1], c.ExecutionFailed) and "not this way" in h.events[-1].error
    h2 = Harness()
    eid2 = h2.start(plan)
    h2.feed(c.ExecutionCancelRequested(aggregate_id=eid2, aggregate_version=9, reason="no"))
    assert [e.step_id for e in h2.events if isinstance(e, c.StepCancelled)] == [PLAN_GATE]
    assert isinstance(h2.events[-1], c.ExecutionCancelled)


def test_a_plan_edited_at_its_review_cannot_bring_in_a_tool_the_workspace_denies() -> None:
    from baton_common.approvals import PLAN_GATE
    from baton_common.workspaces import WorkspacePolicy

    h = Harness()
    h.app.admission.policies = lambda _ws: WorkspacePolicy(tools_deny=["mock.critical"])
    plan = {"approval": {"plan": True}, "steps": [{"id": "a", "tool": "mock.agent"}]}
    eid = h.start(plan)
    gate = _gate(h)
    edited = {"steps": [{"id": "pay", "tool": "mock.critical", "input": {"action": "pay"}}]}
    h.feed(c.ApprovalGranted(aggregate_id=gate.approval_id, aggregate_version=3, execution_id=eid,
                             step_id=PLAN_GATE, input={"plan": edited}, original_input=gate.input,
                             edited=True, by=["ann"]))  # fmt: skip
    assert h.dispatched() == []
    assert isinstance(h.events[-1], c.ExecutionFailed)
    assert "mock.critical" in h.events[-1].error and "denied" in h.events[-1].error


ALTERNATIVE = {
    "steps": [
        {"id": "pay", "tool": "mock.agent", "input": {"task": "card"},
         "approval": {"alternatives_on_reject": True},
         "alternatives": [{"tool": "mock.agent", "input": {"task": "invoice"}}]},
        {"id": "tell", "tool": "mock.agent", "depends_on": ["pay"], "input": {"task": "tell"}},
    ]
}  # fmt: skip


def test_a_rejection_with_alternatives_on_reject_runs_the_first_alternative() -> None:
    h = Harness()
    eid = h.start(ALTERNATIVE)
    _decided(h, eid, c.ApprovalRejected, reason="not by card", by=["ann"])
    [pay] = h.dispatched()
    assert (pay.step_id, pay.variant, pay.input) == ("pay", 1, {"task": "invoice"})
    h.finish(pay)
    [tell] = [d for d in h.dispatched() if d.step_id == "tell"]
    h.finish(tell)
    assert isinstance(h.events[-1], c.ExecutionSucceeded)


def test_a_rejection_while_paused_starts_the_alternative_only_after_resume() -> None:
    h = Harness()
    eid = h.start(ALTERNATIVE)
    h.feed(c.ExecutionPauseRequested(aggregate_id=eid, aggregate_version=9))
    _decided(h, eid, c.ApprovalRejected, reason="not by card", by=["ann"])
    assert h.dispatched() == []  # recorded (the step failed at its gate), nothing started
    h.app.cache.clear()  # and a rebuild from the history agrees
    h.feed(c.ExecutionResumeRequested(aggregate_id=eid, aggregate_version=10))
    [pay] = h.dispatched()
    assert (pay.step_id, pay.variant) == ("pay", 1)


def test_an_approval_while_paused_starts_the_step_only_after_resume() -> None:
    h = Harness()
    eid = _to_gate(h)
    h.feed(c.ExecutionPauseRequested(aggregate_id=eid, aggregate_version=9))
    _decided(h, eid, c.ApprovalGranted, input={"action": "pay"}, original_input={}, by=["a", "b"])
    assert [d.step_id for d in h.dispatched()] == ["book"]
    h.feed(c.ExecutionResumeRequested(aggregate_id=eid, aggregate_version=10))
    assert [d.step_id for d in h.dispatched()] == ["book", "pay"]


# --- a tool's question (TaskFinished.ask): calendar.create_event with conflict: ask ---------------

ASKING = {
    "steps": [
        {"id": "book", "tool": "calendar.create_event",
         "input": {"title": "Review", "start": "2082-11-26T10:00:00Z",
                   "end": "2082-11-26T10:30:00Z", "conflict": "ask"},
         "compensate": {"tool": "calendar.cancel_event", "input": {}}},
        {"id": "notify", "tool": "mock.agent", "depends_on": ["book"], "input": {"task": "tell"}},
    ]
}  # fmt: skip
QUESTION = c.ToolAsk(
    reason="conflicts",
    message="1 conflicting event(s): ann@x.com: Sync. Approve to book it anyway",
    context={"conflicts": [{"title": "Sync", "calendar": "team"}], "count": 1},
    input={**ASKING["steps"][0]["input"], "conflict": "warn"},  # type: ignore[dict-item]
)


def _asked(h: Harness) -> tuple[Any, c.StepDispatched]:
    eid = h.start(ASKING)
    [book] = h.dispatched()
    h.feed(
        c.TaskFinished(
            aggregate_id=eid, step_id="book", attempt=book.attempt, ok=False,
            error="conflict: 1 conflicting event(s)", retryable=False, ask=QUESTION,
        )
    )  # fmt: skip
    return eid, book


def test_a_tools_question_holds_the_step_at_a_gate_showing_its_context() -> None:
    h = Harness()
    eid, book = _asked(h)
    gate = _gate(h)
    assert gate.step_id == "book" and gate.approval_id != approval_id_for(eid, "book")
    assert (gate.message, gate.context, gate.input) == (
        QUESTION.message,
        QUESTION.context,
        QUESTION.input,
    )
    assert not [e for e in h.events if isinstance(e, c.StepFailed)]  # waiting, not failed
    _decided(h, eid, c.ApprovalGranted, input=gate.input, original_input=gate.input, by=["ann"])
    again = h.dispatched()[-1]
    assert (again.step_id, again.attempt, again.input) == ("book", 2, QUESTION.input)
    assert again.idempotency_key == book.idempotency_key  # the same event UID
    h.finish(again, output={"uid": "u1"})
    [notify] = [d for d in h.dispatched() if d.step_id == "notify"]
    h.finish(notify)
    assert isinstance(h.events[-1], c.ExecutionSucceeded)


def test_a_rejected_question_fails_the_step_for_good_with_the_reason() -> None:
    h = Harness()
    eid, _ = _asked(h)
    _decided(h, eid, c.ApprovalRejected, reason="not over the sync", by=["ann"])
    assert [d.step_id for d in h.dispatched()] == ["book"]  # not run again, nothing to undo
    failed = h.events[-1]
    assert isinstance(failed, c.ExecutionFailed)
    assert failed.error == "step 'book' failed: approval rejected: not over the sync"


def test_cancelling_at_a_tools_question_closes_that_gate() -> None:
    h = Harness()
    eid, _ = _asked(h)
    h.feed(c.ExecutionCancelRequested(aggregate_id=eid, aggregate_version=9, reason="no"))
    [cancelled] = [e for e in h.events if isinstance(e, c.StepCancelled)]
    assert cancelled.approval_id == _gate(h).approval_id  # hitl closes the asked gate by it
