"""Approval gates (the executor asks; the hitl service decides)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from baton_common.contracts.execution import StepEvent
from baton_common.events import Event

Json = dict[str, Any]


# --- approval gates -------------------------------------------------------------------------------


class StepApprovalRequested(StepEvent):
    """The executor holds a step at its gate (``requires_approval`` or a critical tool) until a
    person decides; ``approval_id`` names the gate. Recorded on the execution."""

    TYPE = "execution.approval_requested"

    approval_id: UUID
    tool: str
    input: Json
    policy: Json = Field(default_factory=dict)
    message: str | None = None
    reason: str = "requires_approval"
    context: Json | None = None  # what the approvers should see (a tool's question: its conflicts)


class StepApproved(StepEvent):
    """The executor took a gate's approval: the step runs with ``input`` (what was decided)."""

    TYPE = "execution.step_approved"

    approval_id: UUID
    input: Json
    edited: bool = False
    by: list[str] = Field(default_factory=list)


class PlanApproved(Event):
    """The plan passed its review: the execution runs ``plan`` (edited, or as it was)."""

    TYPE = "execution.plan_approved"

    approval_id: UUID
    plan: Json
    edited: bool = False
    by: list[str] = Field(default_factory=list)


class _GateEvent(Event):
    """An event of an approval gate (the hitl service's aggregate): the step of the execution
    it holds."""

    execution_id: UUID
    step_id: str


class ApprovalOpened(_GateEvent):
    """The hitl service opened a gate: who may decide, how many must, and by when."""

    TYPE = "approval.opened"

    tool: str
    input: Json
    policy: Json = Field(default_factory=dict)
    message: str | None = None
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = 1
    deadline_at: datetime | None = None
    context: Json | None = None  # what the approvers should see (a tool's question: its conflicts)
    kind: Literal["approval", "question"] = "approval"  # question: answered in words (planner's)


class ApprovalVoted(_GateEvent):
    """One person approved (or approved with an edited input); more may be needed."""

    TYPE = "approval.voted"

    user: str
    decision: Literal["approve", "edit"]
    comment: str | None = None
    input: Json | None = None


class ApprovalEscalated(_GateEvent):
    """No decision by the deadline: other approvers are asked, with a new deadline."""

    TYPE = "approval.escalated"

    approvers: list[str]
    deadline_at: datetime | None = None


class ApprovalExpired(_GateEvent):
    """No decision by the deadline; ``outcome`` is what the policy said to do."""

    TYPE = "approval.expired"

    outcome: Literal["reject", "approve", "escalate"]


class ApprovalGranted(_GateEvent):
    """The gate opens: the step runs with ``input`` (edited, or as it was asked)."""

    TYPE = "approval.granted"

    input: Json
    original_input: Json
    edited: bool = False
    by: list[str] = Field(default_factory=list)
    comment: str | None = None
    automatic: bool = False


class ApprovalAnswered(_GateEvent):
    """A person answered a question gate (the planner's): the planner plans again with it."""

    TYPE = "approval.answered"

    answer: str
    by: list[str] = Field(default_factory=list)


class ApprovalRejected(_GateEvent):
    """The gate stays shut: the step fails for good (or tries its alternatives, if allowed)."""

    TYPE = "approval.rejected"

    reason: str
    by: list[str] = Field(default_factory=list)
    automatic: bool = False


class ApprovalCancelled(_GateEvent):
    """The execution ended (cancelled, failed) while its gate was open: the gate closes."""

    TYPE = "approval.cancelled"

    reason: str
