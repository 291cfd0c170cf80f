"""Approval gates as every service sees them: the policy a step declares, and the request/reply
that carries a person's decision from the gateway to the hitl service.

Decisions travel as NATS request/reply (not as events the gateway records) because the caller
must hear at once whether the gate was still open (409), whether they may decide (403) and
whether an edited input fits the tool (422): only the hitl service, which owns the Approval
aggregate, can say, and it commits the decision before it answers.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import JsonDict

from baton_common.workspaces import PERMISSIONS

OnTimeout = Literal["reject", "approve", "escalate"]
Decision = Literal["approve", "reject", "edit", "answer"]

_ISO_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def seconds_of(value: float | int | str) -> float:
    """Seconds from a number or an ISO-8601 duration (``PT30M``, ``P1DT2H``)."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):  # a ValueError: pydantic reports it as the field's problem
        raise ValueError(f"{value!r} is neither seconds nor an ISO-8601 duration")
    text = value.strip().upper()
    match = _ISO_DURATION.match(text)
    if not match or text in ("P", "PT"):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{value!r} is neither seconds nor an ISO-8601 duration") from None
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return (
        parts.get("d", 0) * 86400
        + parts.get("h", 0) * 3600
        + parts.get("m", 0) * 60
        + parts.get("s", 0)
    )


DURATION_SCHEMA: JsonDict = {
    "anyOf": [
        {"type": "number", "exclusiveMinimum": 0},
        {"type": "string", "description": "an ISO-8601 duration (PT30M) or seconds"},
        {"type": "null"},
    ]
}


class ApprovalPolicy(BaseModel):
    """``approval:`` on a step: who decides, how many, by when, and what happens after."""

    model_config = ConfigDict(extra="forbid")
    approvers: list[str] = Field(
        default_factory=list,
        description="user names and/or roles; empty: anyone whose role may approve",
    )
    min_approvals: int = Field(1, ge=1, le=100)
    deadline: float | None = Field(
        None, description="seconds, or an ISO-8601 duration", json_schema_extra=DURATION_SCHEMA
    )
    on_timeout: OnTimeout = "reject"
    escalate_to: list[str] = Field(default_factory=list)
    escalation_deadline: float | None = Field(
        None,
        description="after escalating (default: the first deadline again)",
        json_schema_extra=DURATION_SCHEMA,
    )
    message: str | None = Field(None, max_length=5000)
    alternatives_on_reject: bool = Field(
        False, description="a rejection tries the step's alternatives instead of failing it"
    )

    @field_validator("deadline", "escalation_deadline", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if value is None:
            return None
        seconds = seconds_of(value)
        if seconds <= 0:
            raise ValueError("a deadline must be more than zero seconds")
        return seconds

    @model_validator(mode="after")
    def _escalation(self) -> ApprovalPolicy:
        if self.on_timeout == "escalate" and not self.escalate_to:
            raise ValueError("on_timeout: escalate needs escalate_to")
        if self.on_timeout != "reject" and self.deadline is None:
            raise ValueError(f"on_timeout: {self.on_timeout} needs a deadline")
        return self


class PlanReview(ApprovalPolicy):
    """``approval: {plan: true, …}`` on a plan: a person approves (or edits) the whole plan
    before any step runs, with the same policy fields as a step's gate."""

    plan: bool = True


# The plan's own gate: not a step id (ids cannot contain "*"), and its "tool" is the plan.
PLAN_GATE = "*plan*"
PLAN_TOOL = "baton.plan"
# The planner's question about a request it could not plan: one gate per round, answered in words.
QUESTION_GATE = "*question*"
QUESTION_TOOL = "baton.question"
MAX_QUESTIONS = 3  # rounds of questions before the execution fails with the planner's reason


def may_decide(approvers: list[str], user: str, role: str) -> bool:
    """A decider's role must allow approving; a named list narrows it to those users or roles."""
    if "approve" not in PERMISSIONS.get(role, frozenset()):
        return False
    return not approvers or user in approvers or role in approvers


def rpc_subject(root: str) -> str:
    """Where the hitl service answers decisions (core NATS request/reply, queue group ``hitl``)."""
    return f"{root}_rpc.hitl.decide"


class DecisionRequest(BaseModel):
    """A person's decision on one gate, as the gateway forwards it."""

    model_config = ConfigDict(extra="forbid")
    approval_id: str
    workspace_id: str
    user: str
    role: str
    decision: Decision
    input: dict[str, Any] | None = None
    comment: str | None = Field(None, max_length=5000)
    answer: str | None = Field(None, max_length=5000)  # decision ``answer`` (a question gate)


class DecisionReply(BaseModel):
    """The hitl service's answer: an HTTP-like status, a reason, and the approval afterwards."""

    status: int
    detail: str
    approval: dict[str, Any] | None = None


def approval_id_for(execution_id: UUID, step_id: str) -> UUID:
    """One gate per step of an execution: its id, known to the executor and the hitl service."""
    return uuid5(NAMESPACE_URL, f"baton:approval:{execution_id}:{step_id}")


def asked_approval_id(execution_id: UUID, step_id: str, attempt: int) -> UUID:
    """The gate a tool's question opens (``TaskFinished.ask``): one per attempt, since an edited
    input may ask again; apart from the step's own gate, which may have been decided already."""
    return uuid5(NAMESPACE_URL, f"baton:approval:{execution_id}:{step_id}:asked:{attempt}")


def question_id_for(execution_id: UUID, round_: int) -> UUID:
    """The gate of the planner's question number ``round_`` about an execution's request."""
    return uuid5(NAMESPACE_URL, f"baton:approval:{execution_id}:{QUESTION_GATE}:{round_}")
