# mypy: disable-error-code="misc"
"""State from events: the ``on_*`` methods fold each of the Execution's events into its state,
for a command just decided and for a rebuild from the history alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baton_common import contracts as c
from baton_common.approvals import PLAN_GATE
from baton_common.events import Event
from baton_common.plans import Plan
from baton_common.simulation import Simulation

from baton_executor.state import (
    Envelope,
    StepRun,
)

if TYPE_CHECKING:
    from baton_executor.domain import Execution


class Folding:
    """A part of ``Execution`` (domain.py); its methods run on an Execution."""

    # What these methods assign, typed as Execution declares it (mypy reads a mixin's assignments
    # as its own attributes).
    ending: tuple[str, str, str | None] | None
    plan: Plan | None
    _parsed: Plan | None
    simulation: Simulation | None

    def on_conflict_detected(self: Execution, e: c.ExecutionConflictDetected) -> None:
        self.conflicts.update(e.resources)

    def on_started(self: Execution, e: c.ExecutionStarted) -> None:
        plan = self.plan = self._parsed or Plan.model_validate(e.plan)
        self._parsed = None
        self.needs = {s.id: s.needs() for s in plan.steps}
        self.inputs = dict(e.inputs)
        self.steps = {s.id: StepRun() for s in plan.steps}
        self.status = "running"
        self.simulation = Simulation.model_validate(e.simulation) if e.simulation else None
        self.envelope = Envelope(
            e.workspace_id, e.correlation_id or self.id, e.causation_id, e.traceparent
        )

    def on_step_dispatched(self: Execution, e: c.StepDispatched) -> None:
        call = (e.kind, e.tool, e.input, e.idempotency_key) if e.inline else None
        self._opened(e.step_id, e.kind, e.attempt, e.variant, call)

    def _opened(
        self: Execution,
        step_id: str,
        kind: c.StepKind,
        attempt: int,
        variant: int,
        inline_call: tuple[str, str, dict[str, Any], str] | None,
    ) -> None:
        run = self.steps[step_id]
        run.inline_call = inline_call
        if kind == "compensate":
            run.compensation = "running"
        else:
            run.status, run.attempt, run.variant, run.error = "running", attempt, variant, None
            run.waiting = run.waiting_since = run.ticket = None

    def on_step_waiting(self: Execution, e: c.StepWaiting) -> None:
        run = self.steps[e.step_id]
        run.status, run.waiting = "waiting", (e.waiting_for, tuple(e.holders))
        run.waiting_since = run.waiting_since or e.occurred_at
        run.ticket = e.ticket if e.ticket is not None else run.ticket

    def on_step_succeeded(self: Execution, e: c.StepSucceeded) -> None:
        if (call := e.call) is not None:  # a pure step's one event: its dispatch too
            inline_call = (e.kind, call.tool, call.input, call.idempotency_key)
            self._opened(e.step_id, e.kind, e.attempt, call.variant, inline_call)
        run = self.steps[e.step_id]
        if e.kind == "compensate":
            run.compensation = "compensated"
            return
        run.status, run.output = "succeeded", e.output
        self.completed.append(e.step_id)

    def on_step_failed(self: Execution, e: c.StepFailed) -> None:
        run = self.steps[e.step_id]
        if e.kind == "compensate":
            run.compensation = "failed"
            return
        run.error, run.attempt = e.error, e.attempt
        if run.approval == "pending":
            run.approval = "rejected"  # a failure at the gate is its rejection
        if e.final:
            run.status = "failed"
            self._on_final_failure(e.step_id, "run", e.error)
        elif e.retry_at is not None:
            run.status, run.retry_at = "retry_wait", e.retry_at
        elif e.next_variant is not None:  # ready with its next alternative, not started yet
            run.status, run.variant = "pending", e.next_variant

    def on_approval_requested(self: Execution, e: c.StepApprovalRequested) -> None:
        if e.step_id == PLAN_GATE:
            self.reviewing = True
            return
        run = self.steps[e.step_id]
        run.status, run.approval, run.gate = "waiting_approval", "pending", e.approval_id

    def on_plan_approved(self: Execution, e: c.PlanApproved) -> None:
        self.plan = Plan.model_validate(e.plan)
        self.needs = {s.id: s.needs() for s in self.plan.steps}
        self.steps = {s.id: StepRun() for s in self.plan.steps}
        self.reviewing = False

    def on_step_approved(self: Execution, e: c.StepApproved) -> None:
        run = self.steps[e.step_id]
        run.status, run.approval, run.approved_input = "pending", "granted", dict(e.input)

    def on_step_skipped(self: Execution, e: c.StepSkipped) -> None:
        self.steps[e.step_id].status = "skipped"

    def on_step_cancelled(self: Execution, e: c.StepCancelled) -> None:
        if e.step_id == PLAN_GATE:
            self.reviewing = False
            return
        self.steps[e.step_id].status = "cancelled"

    def on_cancelling(self: Execution, e: c.ExecutionCancelling) -> None:
        self.ending = ("cancelled", e.reason or "cancelled on request", None)

    def on_paused(self: Execution, _e: c.ExecutionPaused) -> None:
        self.paused = True

    def on_resumed(self: Execution, _e: c.ExecutionResumed) -> None:
        self.paused = False

    def on_compensation_started(self: Execution, e: c.CompensationStarted) -> None:
        self.status = "compensating"
        self.compensating = list(e.steps)

    def on_succeeded(self: Execution, _e: Event) -> None:
        self.status = "succeeded"

    def on_failed(self: Execution, _e: Event) -> None:
        self.status = "failed"

    def on_cancelled(self: Execution, _e: Event) -> None:
        self.status = "cancelled"
