"""The Approval aggregate: one gate on one step of one execution. No I/O: commands in, events out.

A gate opens when the executor holds a step at it, collects votes until enough distinct people
approved (or one rejected), and otherwise closes at its deadline as its policy says. The deadline
is a durable timer asked for alongside the events, so it is stored in the same commit and fires
once, across restarts. The ``on_*`` methods fold events into state; a rebuild lands on the same
gate.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.approvals import (
    PLAN_TOOL,
    QUESTION_GATE,
    QUESTION_TOOL,
    ApprovalPolicy,
    DecisionRequest,
    may_decide,
)
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.errors import Conflict, Forbidden, Invalid, NotFound
from baton_common.events import Event
from baton_common.sealing import redact
from baton_common.secretinputs import keep_sealed
from baton_common.store import Timer
from baton_common.workspaces import roles_with
from pydantic import ValidationError

OUTCOME: dict[type[Event], str] = {
    c.ApprovalGranted: "granted",
    c.ApprovalRejected: "rejected",
    c.ApprovalCancelled: "cancelled",
    c.ApprovalAnswered: "answered",
}


def timer_id(approval_id: UUID, deadline: int) -> str:
    """One timer per deadline of a gate: a stale one (an earlier deadline) is recognised."""
    return f"approval:{approval_id}:deadline:{deadline}"


def _seconds(value: float) -> str:
    return f"{value:g} s" if value < 120 else f"{value / 60:g} min"


class Approval(Aggregate):
    """A gate: what is asked, who may decide, the votes, the deadline and the outcome."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.status = "new"  # new|pending|granted|rejected|cancelled|answered
        self.kind = "approval"  # or "question": the planner's, answered in words
        self.answer: str | None = None
        self.workspace_id = "default"
        self.execution_id: UUID | None = None
        self.step_id = ""
        self.tool = ""
        self.input: dict[str, Any] = {}
        self.edited_input: dict[str, Any] | None = None
        self.decided_input: dict[str, Any] | None = None
        self.policy = ApprovalPolicy()
        self.policy_data: dict[str, Any] = {}
        self.message: str | None = None
        self.context: dict[str, Any] | None = None  # what the approvers should see (a tool's)
        self.approvers: list[str] = []
        self.min_approvals = 1
        self.deadline_at: datetime | None = None
        self.deadlines = 0  # deadlines set so far (the current one's number)
        self.escalated = False
        self.expired = False
        self.votes: list[dict[str, Any]] = []
        self.opened_at: datetime | None = None
        self.decided_at: datetime | None = None
        self.history: list[dict[str, Any]] = []
        self.traceparent: str | None = None
        self.timers_set: list[Timer] = []
        self.timers_clear: list[str] = []

    # --- commands ---------------------------------------------------------------------------------

    def open(self, request: c.StepApprovalRequested, now: datetime) -> None:
        """Open the gate the executor asked for; an invalid policy opens it and rejects at once,
        so the step fails with the reason instead of waiting for ever."""
        try:
            policy, problem = ApprovalPolicy.model_validate(request.policy), None
        except ValidationError as exc:
            policy, problem = ApprovalPolicy(), "; ".join(e["msg"] for e in exc.errors())
        deadline_at = now + timedelta(seconds=policy.deadline) if policy.deadline else None
        self.trigger(
            c.ApprovalOpened,
            **request.caused(correlation_id=request.aggregate_id),
            execution_id=request.aggregate_id,
            step_id=request.step_id,
            tool=request.tool,
            input=request.input,
            policy=request.policy,
            message=request.message or policy.message,
            approvers=policy.approvers,
            min_approvals=policy.min_approvals,
            deadline_at=deadline_at,
            context=request.context,
        )
        if problem is not None:
            self._reject(f"the step's approval policy is invalid: {problem}", [], automatic=True)
        elif deadline_at is not None:
            self._set_deadline(deadline_at)

    def ask(self, question: c.PlanQuestionAsked, now: datetime) -> None:
        """Open the gate of the planner's question: answered in words, or declined (rejected);
        with no answer by its deadline the execution fails."""
        deadline = question.deadline
        deadline_at = now + timedelta(seconds=deadline) if deadline else None
        asked: dict[str, Any] = {"request": question.request, "understood": question.understood}
        asked |= {"not_understood": question.not_understood, "choices": question.choices}
        self.trigger(
            c.ApprovalOpened,
            **question.caused(correlation_id=question.execution_id),
            execution_id=question.execution_id,
            step_id=QUESTION_GATE,
            tool=QUESTION_TOOL,
            input=asked,
            policy={"deadline": deadline} if deadline else {},
            message=question.question,
            deadline_at=deadline_at,
            context={"round": question.round, "suggestion": question.suggestion},
            kind="question",
        )
        if deadline_at is not None:
            self._set_deadline(deadline_at)

    def decide(
        self, request: DecisionRequest, now: datetime, catalogue: Catalogue = DEFAULT_CATALOGUE
    ) -> None:
        """A person's decision; refused (403/404/409/422) without changing anything."""
        self._check(request)
        if request.decision == "answer":
            self._trigger(
                c.ApprovalAnswered,
                actor=_actor(request),
                answer=(request.answer or "").strip(),
                by=[request.user],
            )
            self._clear_deadline()
            return
        if request.decision == "reject":
            reason = request.comment or f"rejected by {request.user}"
            self._reject(reason, [request.user], actor=_actor(request))
            return
        edited = keep_sealed(request.input, self.input)  # a secret left as *** stays sealed
        if request.decision == "edit":
            self._check_input(edited, catalogue)
        self._trigger(
            c.ApprovalVoted,
            actor=_actor(request),
            user=request.user,
            decision=request.decision,
            comment=request.comment,
            input=edited if request.decision == "edit" else None,
        )
        if len(self.voters) >= self.min_approvals:
            self._grant(self.edited_input, self.voters, request.comment, actor=_actor(request))

    def deadline_passed(self, deadline: int, now: datetime) -> None:
        """Deadline number ``deadline`` is due: act on it as the policy says, once."""
        if self.status != "pending" or deadline != self.deadlines:
            return  # decided meanwhile, or an earlier deadline that an escalation replaced
        waited = (
            self.policy.escalation_deadline if self.escalated else None
        ) or self.policy.deadline
        what = "answer" if self.kind == "question" else "decision"
        reason = f"no {what} within {_seconds(waited or 0)}"
        outcome = "reject" if self.escalated else self.policy.on_timeout
        self._trigger(c.ApprovalExpired, outcome=outcome)
        if outcome == "approve":
            self._grant(None, [], None, automatic=True)
        elif outcome == "escalate":
            self._escalate(now)
        else:
            self._reject(reason, [], automatic=True)

    def cancel(self, reason: str, causation: Event) -> None:
        """The step was cancelled with its execution: an open gate closes."""
        if self.status != "pending":
            return
        self.traceparent = causation.traceparent or self.traceparent
        self._trigger(c.ApprovalCancelled, causation_id=causation.event_id, reason=reason)
        self._clear_deadline()

    # --- rules ------------------------------------------------------------------------------------

    @property
    def voters(self) -> list[str]:
        return list(dict.fromkeys(v["user"] for v in self.votes))

    def _check(self, request: DecisionRequest) -> None:
        if self.status == "new" or request.workspace_id != self.workspace_id:
            raise NotFound(f"no approval {self.id}")  # another workspace's gate is not there
        if self.status != "pending":
            raise Conflict(f"approval {self.id} is already {self.status}; nothing was changed")
        if request.user in self.voters:
            raise Conflict(f"{request.user} has already approved this gate; another person must")
        if not may_decide(self.approvers, request.user, request.role):
            raise Forbidden(self._who_may())
        if (request.decision == "edit") != (request.input is not None):
            raise Invalid("'input' is given with decision 'edit', and only then")
        self._check_answer(request)

    def _check_answer(self, request: DecisionRequest) -> None:
        """A question is answered (or declined with reject); any other gate is not answered."""
        question = self.kind == "question"
        if question and request.decision in ("approve", "edit"):
            raise Invalid("this gate is the planner's question: answer it, or reject it")
        if not question and request.decision == "answer":
            raise Invalid(
                "only a question is answered; decide this gate with approve, reject or edit"
            )
        if (request.decision == "answer") != bool((request.answer or "").strip()):
            raise Invalid("'answer' is given, not empty, with decision 'answer', and only then")

    def _who_may(self) -> str:
        roles = ", ".join(roles_with("approve"))
        if not self.approvers:
            return f"deciding an approval needs one of the roles {roles}"
        named = ", ".join(self.approvers)
        return f"only {named} may decide this gate (with one of the roles {roles})"

    def _check_input(self, value: dict[str, Any] | None, catalogue: Catalogue) -> None:
        if self.tool == PLAN_TOOL and value is not None:
            _check_plan(value, catalogue)  # a plan's review: an edited plan is checked as a plan
            return
        spec = catalogue.get(self.tool)
        if spec is None or value is None:
            return  # a tool this catalogue does not know: the executor checks it when it runs
        errors = sorted(spec.input_validator().iter_errors(value), key=lambda e: str(list(e.path)))
        if errors:
            path = ".".join(str(p) for p in errors[0].absolute_path)
            field = f"input.{path}" if path else "input"
            raise Invalid(f"{field}: {errors[0].message} (tool {self.tool})")

    # --- outcomes ---------------------------------------------------------------------------------

    def _grant(
        self,
        edited: dict[str, Any] | None,
        by: list[str],
        comment: str | None,
        *,
        automatic: bool = False,
        actor: str | None = None,
    ) -> None:
        self._trigger(
            c.ApprovalGranted,
            actor=actor,
            input=edited if edited is not None else self.input,
            original_input=self.input,
            edited=edited is not None,
            by=by,
            comment=comment,
            automatic=automatic,
        )
        self._clear_deadline()

    def _reject(
        self, reason: str, by: list[str], *, automatic: bool = False, actor: str | None = None
    ) -> None:
        self._trigger(c.ApprovalRejected, actor=actor, reason=reason, by=by, automatic=automatic)
        self._clear_deadline()

    def _escalate(self, now: datetime) -> None:
        seconds = self.policy.escalation_deadline or self.policy.deadline or 0
        deadline_at = now + timedelta(seconds=seconds)
        self._trigger(
            c.ApprovalEscalated, approvers=self.policy.escalate_to, deadline_at=deadline_at
        )
        self._set_deadline(deadline_at)

    # --- timers -----------------------------------------------------------------------------------

    def _set_deadline(self, due: datetime) -> None:
        # ``deadlines`` counts from the events (opened, escalated): a rebuild agrees with it.
        payload = {"approval_id": str(self.id), "deadline": self.deadlines}
        self.timers_set.append(Timer(timer_id(self.id, self.deadlines), due, payload))

    def _clear_deadline(self) -> None:
        if self.deadlines:
            self.timers_clear.append(timer_id(self.id, self.deadlines))

    def collect_timers(self) -> tuple[list[Timer], list[str]]:
        """Take the timer changes asked for since the last collect (to commit them)."""
        timers, clear = self.timers_set, self.timers_clear
        self.timers_set, self.timers_clear = [], []
        return timers, [t for t in clear if t not in {s.timer_id for s in timers}]

    def _trigger(self, event_class: type[Event], **fields: Any) -> Event:
        assert self.execution_id is not None
        fields.setdefault("causation_id", None)
        return self.trigger(
            event_class,
            workspace_id=self.workspace_id,
            correlation_id=self.execution_id,
            traceparent=self.traceparent,
            execution_id=self.execution_id,
            step_id=self.step_id,
            **fields,
        )

    # --- state from events ------------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        super().apply(event)
        self.history.append(_entry(event))
        if type(event) in OUTCOME:
            self.status, self.decided_at = OUTCOME[type(event)], event.occurred_at

    def on_opened(self, e: c.ApprovalOpened) -> None:
        self.status, self.workspace_id, self.execution_id = (
            "pending",
            e.workspace_id,
            e.execution_id,
        )
        self.step_id, self.tool, self.input, self.message = e.step_id, e.tool, e.input, e.message
        self.context, self.kind = e.context, e.kind
        self.approvers, self.min_approvals = e.approvers, e.min_approvals
        self.deadline_at, self.opened_at, self.traceparent = (
            e.deadline_at,
            e.occurred_at,
            e.traceparent,
        )
        self.policy_data = e.policy
        try:
            self.policy = ApprovalPolicy.model_validate(e.policy)
        except ValidationError:
            self.policy = ApprovalPolicy()  # rejected at once when opened (see ``open``)
        self.deadlines = 1 if e.deadline_at is not None else 0

    def on_voted(self, e: c.ApprovalVoted) -> None:
        vote = {"user": e.user, "decision": e.decision, "comment": e.comment}
        self.votes.append({**vote, "at": e.occurred_at.isoformat()})
        if e.input is not None:
            self.edited_input = e.input

    def on_escalated(self, e: c.ApprovalEscalated) -> None:
        self.approvers, self.deadline_at, self.escalated = e.approvers, e.deadline_at, True
        self.deadlines += 1

    def on_expired(self, e: c.ApprovalExpired) -> None:
        self.expired = self.expired or e.outcome != "escalate"

    def on_granted(self, e: c.ApprovalGranted) -> None:
        self.decided_input = e.input

    def on_answered(self, e: c.ApprovalAnswered) -> None:
        self.answer = e.answer

    # --- the view a decision's reply carries ------------------------------------------------------

    def view(self) -> dict[str, Any]:
        """The gate as the approvals read model shows it (the same keys)."""
        return {
            "id": str(self.id),
            "workspace_id": self.workspace_id,
            "execution_id": str(self.execution_id),
            "step_id": self.step_id,
            "tool": self.tool,
            "input": redact(self.input),  # a secret tool input (sealed) as ***
            "edited_input": redact(self.edited_input),
            "decided_input": redact(self.decided_input),
            "policy": self.policy_data,
            "message": self.message,
            "context": self.context,
            "kind": self.kind,
            "answer": self.answer,
            "status": self.status,
            "approvers": self.approvers,
            "min_approvals": self.min_approvals,
            "votes": self.votes,
            "deadline_at": _iso(self.deadline_at),
            "escalated": self.escalated,
            "expired": self.expired,
            "opened_at": _iso(self.opened_at),
            "decided_at": _iso(self.decided_at),
            "history": self.history,
        }


def _actor(request: DecisionRequest) -> str:
    return f"{request.user} ({request.role})"


def _entry(e: Event) -> dict[str, Any]:
    data = e.model_dump(mode="json", exclude={*Event.model_fields} - {"actor"})
    data.pop("execution_id", None)
    data.pop("step_id", None)
    return {"type": e.type, "at": e.occurred_at.isoformat(), **data}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _check_plan(value: dict[str, Any], catalogue: Catalogue) -> None:
    """``{"plan": {…}}``: validated like any plan (each problem named)."""
    from baton_common.plans import PlanInvalid, validate_plan

    if not isinstance(value.get("plan"), dict):
        raise Invalid('input.plan: an edited plan is sent as {"plan": {…}}')
    try:
        validate_plan(value["plan"], catalogue)
    except PlanInvalid as exc:
        raise Invalid(f"input.plan: {exc}") from None
