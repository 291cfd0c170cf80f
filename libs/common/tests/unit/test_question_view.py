"""The execution view of a request the planner asked about: waiting with its question, then the
answer and the plan; a cancel folded before the question keeps the execution cancelled."""

from __future__ import annotations

from uuid import uuid4

from baton_common import contracts as c
from baton_common.approvals import QUESTION_GATE, question_id_for
from baton_common.views import fold


def question(execution_id: object, round_: int = 1) -> c.PlanQuestionAsked:
    return c.PlanQuestionAsked(
        aggregate_id=execution_id,
        aggregate_version=round_,
        execution_id=execution_id,
        approval_id=question_id_for(execution_id, round_),  # type: ignore[arg-type]
        round=round_,
        question="What should be done for 'frobnicate it'?",
        not_understood=["'frobnicate it' (no tool fits)"],
        planner="offline",
        request="read notes.md and then frobnicate it",
    )


def test_the_view_waits_with_the_question_then_shows_the_answer_and_the_plan() -> None:
    eid = uuid4()
    asked = question(eid)
    gate = asked.approval_id
    opened = c.ApprovalOpened(
        aggregate_id=gate,
        aggregate_version=1,
        execution_id=eid,
        step_id=QUESTION_GATE,
        tool="baton.question",
        input={},
        kind="question",
        deadline_at=asked.occurred_at,
    )
    requested = c.ExecutionRequested(aggregate_id=eid, aggregate_version=1, request=asked.request)
    view = fold([requested, asked, opened])
    assert view is not None and view["status"] == "waiting"
    assert view["question"]["status"] == "pending" and view["question"]["deadline_at"]
    answered = c.ApprovalAnswered(
        aggregate_id=gate, aggregate_version=2, execution_id=eid, step_id=QUESTION_GATE,
        answer="summarise it", by=["ann"],
    )  # fmt: skip
    plan = {"steps": [{"id": "read", "tool": "files.read", "input": {"path": "notes.md"}}]}
    proposed = c.PlanProposed(
        aggregate_id=eid, aggregate_version=2, execution_id=eid, plan=plan, planner="offline"
    )
    view = fold([answered, proposed], view)
    assert view is not None and view["status"] == "planned" and "read" in view["steps"]
    assert view["question"]["status"] == "answered"
    assert view["question"]["answer"] == "summarise it"


def test_a_cancel_folded_before_the_question_stays_cancelled() -> None:
    eid = uuid4()
    cancelled = c.ExecutionCancelled(aggregate_id=eid, aggregate_version=1, reason="moot")
    view = fold([cancelled, question(eid)])
    assert view is not None and view["status"] == "cancelled" and view["question"]
