"""Approval gates (the executor asks; the hitl service decides)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from baton_common.events import Event

Json = dict[str, Any]


# --- approval gates -------------------------------------------------------------------------------


class StepApprovalRequested(Event):
    """The executor holds a step at its gate (``requires_approval`` or a critical tool) until a
    person decides; ``approval_id`` names the gate. Recorded on the execution."""

    TYPE = "execution.approval_requested"

    step_id: str
    approval_id: UUID
    tool: str
    input: Json
    policy: Json = Field(default_factory=dict)
    message: str | None = None
    reason: str = "requires_approval"
    context: Json | None = None  # what the approvers should see (a tool's question: its conflicts)


class StepApproved(Event):
    """The executor took a gate's approval: the step runs with ``input`` (what was decided)."""

    TYPE = "execution.step_approved"

    step_id: str
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


class ApprovalOpened(Event):
    """The hitl service opened a gate: who may decide, how many must, and by when."""

    TYPE = "approval.opened"

    execution_id: UUID
    step_id: str
    tool: str
    input: Json
    policy: Json = Field(default_factory=dict)
    message: str | None = None
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = 1
    deadline_at: datetime | None = None
    context: Json | None = None  # what the approvers should see (a tool's question: its conflicts)
    kind: Literal["approval", "question"] = "approval"  # question: answered in words (planner's)


class ApprovalVoted(Event):
    """One person approved (or approved with an edited input); more may be needed."""

    TYPE = "approval.voted"

    execution_id: UUID
    step_id: str
    user: str
    decision: Literal["approve", "edit"]
    comment: str | None = None
    input: Json | None = None


class ApprovalEscalated(Event):
    """No decision by the deadline: other approvers are asked, with a new deadline."""

    TYPE = "approval.escalated"

    execution_id: UUID
    step_id: str
    approvers: list[str]
    deadline_at: datetime | None = None


class ApprovalExpired(Event):
    """No decision by the deadline; ``outcome`` is what the policy said to do."""

    TYPE = "approval.expired"

    execution_id: UUID
    step_id: str
    outcome: Literal["reject", "approve", "escalate"]


class ApprovalGranted(Event):
    """The gate opens: the step runs with ``input`` (edited, or as it was asked)."""

    TYPE = "approval.granted"

    execution_id: UUID
    step_id: str
    input: Json
    original_input: Json
    edited: bool = False
    by: list[str] = Field(default_factory=list)
    comment: str | None = None
    automatic: bool = False


class ApprovalAnswered(Event):
    """A person answered a question gate (the planner's): the planner plans again with it."""

    TYPE = "approval.answered"

    execution_id: UUID
    step_id: str
    answer: str
    by: list[str] = Field(default_factory=list)


class ApprovalRejected(Event):
    """The gate stays shut: the step fails for good (or tries its alternatives, if allowed)."""

    TYPE = "approval.rejected"

    execution_id: UUID
    step_id: str
    reason: str
    by: list[str] = Field(default_factory=list)
    automatic: bool = False


class ApprovalCancelled(Event):
    """The execution ended (cancelled, failed) while its gate was open: the gate closes."""

    TYPE = "approval.cancelled"

    execution_id: UUID
    step_id: str
    reason: str
