# mypy: disable-error-code="misc"
"""Approval gates of the Execution aggregate: a step (or the whole plan) waits for people; the hitl
service decides and the decision comes back as an event. The gate comes before admission, so no
lock or rate place is held while people think."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from baton_common import contracts as c
from baton_common.approvals import PLAN_GATE, ApprovalPolicy, approval_id_for, asked_approval_id
from baton_common.plans import (
    Plan,
    PlanInvalid,
    ReferenceError_,
    Step,
    resolve,
    validate_plan,
)

from baton_executor.state import (
    TERMINAL,
    StepRun,
)

if TYPE_CHECKING:
    from baton_executor.domain import Execution


class Gates:
    """A part of ``Execution`` (domain.py); its methods run on an Execution."""

    def _held_at_gate(
        self: Execution, step: Step, run: StepRun, tool_input: dict[str, Any]
    ) -> bool:
        """True while the step must wait for a person; asks for the decision the first time.
        The gate comes before admission, so no lock or rate place is held while people think."""
        reason = step.gate()
        if reason is None or run.approval == "granted":
            return False
        if run.approval is None:
            policy = step.approval or ApprovalPolicy()
            self._event(
                c.StepApprovalRequested,
                step_id=step.id,
                approval_id=approval_id_for(self.id, step.id),
                tool=step.tool,
                input=tool_input,
                policy=policy.model_dump(mode="json", exclude_defaults=True),
                message=self._message(policy.message),
                reason=reason,
            )
        return True

    def _message(self: Execution, text: str | None) -> str | None:
        """The approver's message with its ``${steps…}`` values filled in, so they see what
        will be done; a value not known yet stays as written."""
        if text is None:
            return None
        try:
            return str(resolve(text, self._scope()))
        except ReferenceError_:
            return text

    def approval_granted(
        self: Execution,
        e: c.ApprovalGranted,
        now: datetime,
        refused: Callable[[Plan], str | None] = lambda _plan: None,
    ) -> None:
        """``refused``: why the workspace's policy refuses a reviewed plan (the executor's
        check of its tools), so a plan edited at the gate cannot bring in a denied tool."""
        if e.step_id == PLAN_GATE:
            self._plan_granted(e, now, refused)
            return
        run = self.steps.get(e.step_id)
        if run is None or run.approval != "pending" or self.status in TERMINAL:
            return  # decided already, or the step was cancelled meanwhile
        if run.gate is not None and e.aggregate_id != run.gate:
            return  # an earlier gate of this step, decided twice
        self._event(
            c.StepApproved,
            step_id=e.step_id,
            approval_id=e.aggregate_id,
            input=e.input,
            edited=e.edited,
            by=e.by,
        )
        self.advance(now)

    def approval_rejected(self: Execution, e: c.ApprovalRejected, now: datetime) -> None:
        assert self.plan is not None
        if e.step_id == PLAN_GATE:
            if self.reviewing and self.status not in TERMINAL:
                self._event(c.ExecutionFailed, error=f"plan rejected: {e.reason}")
            return
        run = self.steps.get(e.step_id)
        if run is None or run.approval != "pending" or self.status in TERMINAL:
            return
        if run.gate is not None and e.aggregate_id != run.gate:
            return
        step = self.plan.step(e.step_id)
        error = f"approval rejected: {e.reason}"
        policy = step.approval or ApprovalPolicy()
        if policy.alternatives_on_reject and step.alternatives:
            # Ready again with its first alternative: it starts as any ready step does
            # (advance, below), so not while the execution is paused.
            self._event(
                c.StepFailed, step_id=e.step_id, attempt=run.attempt, error=error, next_variant=1
            )
        else:  # for good: no retries; the saga compensates what was done
            self._event(
                c.StepFailed, step_id=e.step_id, attempt=run.attempt, error=error, final=True
            )
            self._on_final_failure(e.step_id, "run", error)
        self.advance(now)

    def _plan_granted(
        self: Execution,
        e: c.ApprovalGranted,
        now: datetime,
        refused: Callable[[Plan], str | None],
    ) -> None:
        """Run the plan as reviewed; an edited plan is validated and checked against the
        workspace's policy like any plan."""
        if not self.reviewing or self.status in TERMINAL:
            return
        try:
            plan = validate_plan(e.input.get("plan") or {}, inputs=self.inputs)
        except PlanInvalid as exc:
            self._event(c.ExecutionFailed, error=f"the reviewed plan is not valid: {exc}")
            return
        if reason := refused(plan):
            self._event(c.ExecutionFailed, error=f"the reviewed plan is refused: {reason}")
            return
        self._event(
            c.PlanApproved,
            approval_id=e.aggregate_id,
            plan=plan.model_dump(mode="json"),
            edited=e.edited,
            by=e.by,
        )
        self.advance(now)

    def _close_gates(self: Execution, reason: str) -> None:
        """An ending execution cancels steps still at their gates (the hitl service closes them)."""
        for step_id, run in self.steps.items():
            if run.status == "waiting_approval":
                self._event(c.StepCancelled, step_id=step_id, reason=reason, approval_id=run.gate)

    def _may_ask(self: Execution, run: StepRun, kind: str) -> bool:
        """A tool's question opens a gate for a step's own tool in a real run: a compensation
        or an alternative cannot wait for people, and a rehearsal has nobody to ask."""
        return kind == "run" and run.variant == 0 and self.simulation is None

    def _asked(self: Execution, step_id: str, attempt: int, ask: c.ToolAsk) -> None:
        """The tool asks a person (``calendar.create_event`` with ``conflict: ask`` found
        conflicts): the step waits at a gate showing what it found, under the step's approval
        policy (approvers, deadline) if it has one. Approved, it runs again with the input the
        tool proposed, as approved or edited (``_dispatch``); rejected, it fails for good. Like
        the step's own gate, it holds no lock or place while people think."""
        assert self.plan is not None
        step = self.plan.step(step_id)
        policy = step.approval or ApprovalPolicy()
        self._event(
            c.StepApprovalRequested,
            step_id=step_id,
            approval_id=asked_approval_id(self.id, step_id, attempt),
            tool=step.tool,
            input=ask.input,
            policy=policy.model_dump(mode="json", exclude_defaults=True),
            message=ask.message,
            reason=ask.reason,
            context=ask.context,
        )
        if self.steps[step_id].holds:
            self.admission.release(f"{self.sid}:{step_id}", self.envelope.workspace_id)
