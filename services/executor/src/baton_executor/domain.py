"""The Execution aggregate: a plan's run, step by step. No I/O: commands in, events out.

Every decision (which steps are ready, retry or alternative or give up, when to compensate) is
made here and recorded as an event; the ``on_*`` methods fold events into state, so a rebuild
from the history lands on the same decisions. Timers (retry backoff, step deadlines) are asked
for alongside the events and stored in the same commit, so they survive a restart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.approvals import PLAN_GATE, PLAN_TOOL, ApprovalPolicy, approval_id_for
from baton_common.events import Event
from baton_common.plans import (
    Plan,
    PlanInvalid,
    ReferenceError_,
    Step,
    evaluate_condition,
    resolve,
    validate_plan,
)
from baton_common.simulation import Simulation
from baton_common.store import Timer

from baton_executor import simulate
from baton_executor.coordination import Coordination
from baton_executor.inline import InlineCall, InlineResult, InlineRunner, never
from baton_executor.ports import Admission, Admitted, Ask, Claim, OpenAdmission, Wait

TERMINAL = {"succeeded", "failed", "cancelled"}
STEP_DONE = {"succeeded", "skipped", "failed", "cancelled"}
STEP_ACTIVE = {"running", "retry_wait", "waiting"}  # started and not yet ended
MAX_CONFLICT_PEERS = 20  # other executions named in one conflict event
# A step's backstop deadline: its own timeout plus room for a worker to be replaced.
DEADLINE_GRACE_S = 60.0


class ExecutorError(Exception):
    """Base of the executor's domain errors."""


@dataclass
class StepRun:
    """One step's state within an execution."""

    status: str = "pending"  # pending|waiting|waiting_approval|running|retry_wait|succeeded|…
    attempt: int = 0
    variant: int = 0  # 0 = the step's own tool, n = alternatives[n-1]
    output: Any = None
    error: str | None = None
    compensation: str | None = None  # None|running|compensated|failed
    waiting: tuple[str, tuple[str, ...]] | None = None  # (what for, holders) last recorded
    waiting_since: datetime | None = None
    ticket: int | None = None  # its place in the lock queues
    approval: str | None = None  # None|pending|granted|rejected: its gate, if it has one
    approved_input: dict[str, Any] | None = None  # what the approvers let it run with


@dataclass
class Envelope:
    """Envelope fields every event of one execution shares."""

    workspace_id: str
    correlation_id: UUID
    causation_id: UUID | None = None
    traceparent: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "workspace_id": self.workspace_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "traceparent": self.traceparent,
        }


class Execution(Coordination, Aggregate):
    """A plan being run: step states, the compensation queue, and the outcome."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.status = "new"
        self.plan: Plan | None = None
        self.inputs: dict[str, Any] = {}
        self.steps: dict[str, StepRun] = {}
        self.completed: list[str] = []  # run steps in the order they succeeded
        self.compensating: list[str] = []
        self.ending: tuple[str, str, str | None] | None = None  # (outcome, reason, failed step)
        self.paused = False
        self.envelope = Envelope("default", aggregate_id)
        self.timers_set: list[Timer] = []
        self.timers_clear: list[str] = []
        self._rng = random.Random(str(aggregate_id))
        self._parsed: Plan | None = None
        self.needs: dict[str, list[str]] = {}  # step id -> the steps it waits for (computed once)
        self.reviewing = False  # the plan waits at its own gate
        self.conflicts: set[str] = set()  # resources a conflict was recorded for
        self.admission: Admission = OpenAdmission()  # set by the application before commands
        self.simulation: Simulation | None = None  # a dry run, mock or replay: no side effects
        self.inline: InlineRunner = never  # set by the application: pure tools run in process
        # Inline results not yet folded in: (step, attempt, kind, result); advance() drains them.
        self._settling: list[tuple[str, int, c.StepKind, InlineResult]] = []

    # --- commands ---------------------------------------------------------------------------------

    def start(
        self,
        plan: Plan,
        inputs: dict[str, Any],
        request: str | None,
        now: datetime,
        review: ApprovalPolicy | None = None,
        simulation: Simulation | None = None,
    ) -> None:
        self._parsed = plan  # spares on_started parsing the plan it was just given
        self._event(
            c.ExecutionStarted,
            plan=plan.model_dump(mode="json"),
            inputs=inputs,
            request=request,
            simulation=simulation.model_dump(mode="json") if simulation else None,
        )
        if review is not None:  # nothing runs until a person approved (or edited) the plan
            self._event(
                c.StepApprovalRequested,
                step_id=PLAN_GATE,
                approval_id=approval_id_for(self.id, PLAN_GATE),
                tool=PLAN_TOOL,
                input={"plan": plan.model_dump(mode="json", exclude_defaults=True)},
                policy=review.model_dump(mode="json", exclude_defaults=True),
                message=review.message,
                reason="the plan waits for review",
            )
        self.advance(now)

    def conflict_detected(self, resources: list[str], others: list[UUID]) -> None:
        """Other running executions write the same resources: say so in the history, once per
        resource (a hundred executions posting to one URL are not told a hundred times each)."""
        new = [r for r in resources if r not in self.conflicts]
        if self.status == "running" and new and others:
            shown = others[:MAX_CONFLICT_PEERS]
            self._event(c.ExecutionConflictDetected, resources=new, with_executions=shown)

    def written_resources(self) -> list[str]:
        """What the plan writes, as far as it is known at start: exclusive locks, and the file
        or URL targets of write-class tools (a GET is a read). Values from steps are not known
        yet; those targets are left out."""
        assert self.plan is not None
        ws, found = self.envelope.workspace_id, set()
        scope = {"input": self.inputs, "steps": {}}
        for step in self.plan.steps:
            for lock in step.locks:
                if lock.mode == "exclusive":
                    found.add(_known(f"lock:{ws}:", lock.name, scope))
            for call in [
                step.model_dump(include={"tool", "input"}),
                *(a.model_dump() for a in step.alternatives),
            ]:
                found.add(_write_target(ws, call["tool"], call["input"], scope))
        return sorted(r for r in found if r)

    def reject(self, error: str) -> None:
        """The plan cannot run here: the execution fails before it starts."""
        self._event(c.ExecutionFailed, error=error)

    def task_finished(self, result: c.TaskFinished, now: datetime) -> None:
        self._settle(
            result.step_id,
            result.attempt,
            result.kind,
            InlineResult(
                ok=result.ok,
                output=result.output,
                error=result.error,
                retryable=result.retryable,
                duration_ms=result.duration_ms,
            ),
            now,
            result.retry_after_s or 0.0,
        )
        self.advance(now)

    def _settle(
        self,
        step_id: str,
        attempt: int,
        kind: c.StepKind,
        result: InlineResult,
        now: datetime,
        retry_after_s: float = 0.0,
    ) -> None:
        """Record one attempt's outcome (a worker's report, or an inline run's)."""
        run = self.steps.get(step_id)
        if run is None or run.attempt != attempt or not self._awaiting(run, kind):
            return  # a late or duplicate result of an attempt already decided
        self.timers_clear.append(_deadline_id(self.id, step_id, attempt))
        if result.ok:
            self._event(
                c.StepSucceeded,
                step_id=step_id,
                attempt=attempt,
                kind=kind,
                output=result.output,
                duration_ms=result.duration_ms,
            )
        else:
            self._failed(
                step_id, kind, result.error or "failed", result.retryable, now, retry_after_s
            )

    def timer_fired(self, payload: dict[str, Any], now: datetime) -> None:
        if self.coordination_timer(payload):  # a message wait ran out (messenger.py)
            self.advance(now)
            return
        if payload["kind"] == "admit_all":  # the execution got its place in flight
            if not self.paused and self.ending is None:
                for waiting in [s for s, r in self.steps.items() if r.status == "waiting"]:
                    self._dispatch(waiting, now)
            self.advance(now)
            return
        step_id, attempt = payload["step_id"], int(payload["attempt"])
        run = self.steps.get(step_id)
        if run is None or run.attempt != attempt:
            return
        if payload["kind"] == "retry" and run.status == "retry_wait":
            self._dispatch(step_id, now)
        elif payload["kind"] == "admit" and run.status == "waiting":
            if not self.paused and self.ending is None:
                rate_at = payload.get("rate_at")
                self._dispatch(
                    step_id, now, rate_at=datetime.fromisoformat(rate_at) if rate_at else None
                )
        elif payload["kind"] == "deadline" and self._awaiting(run, payload.get("task", "run")):
            error = f"no result within {payload.get('after_s', 0):.0f}s (worker lost or stuck)"
            self._failed(step_id, payload.get("task", "run"), error, True, now)
        self.advance(now)

    def pause(self, reason: str | None) -> None:
        if self.status == "running" and not self.paused:
            self._event(c.ExecutionPaused, reason=reason)

    def resume(self, now: datetime) -> None:
        if self.paused and self.status == "running":
            self._event(c.ExecutionResumed)
            for step_id in [s for s, r in self.steps.items() if r.status == "waiting"]:
                self._dispatch(step_id, now)  # ask again: nothing was admitted while paused
            self.advance(now)

    def cancel(self, reason: str | None, now: datetime) -> None:
        if self.status in TERMINAL or self.ending is not None:
            return
        if self.plan is None:  # cancelled before its plan arrived
            self._event(c.ExecutionCancelled, reason=reason)
            return
        self._event(c.ExecutionCancelling, reason=reason)
        for step_id, run in self.steps.items():
            if run.status in STEP_ACTIVE or run.status == "waiting_approval":
                self.timers_clear.append(_deadline_id(self.id, step_id, run.attempt))
                self.timers_clear.append(_retry_id(self.id, step_id, run.attempt))
                self.timers_clear.append(_admit_id(self.id, step_id))
                self._event(c.StepCancelled, step_id=step_id, reason="execution cancelled")
        self.advance(now)

    # --- the scheduler ----------------------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        """Start what can start; when nothing more can, compensate or finish. Steps run inline
        end here too, so a chain of pure steps is decided to its end in one command."""
        self._advance(now)
        while self._settling:
            settling, self._settling = self._settling, []
            for step_id, attempt, kind, result in settling:
                self._settle(step_id, attempt, kind, result, now)
            self._advance(now)

    def _advance(self, now: datetime) -> None:
        if self.plan is None or self.status in TERMINAL:
            return
        if self.reviewing:
            if self.ending is None:
                return  # the plan waits for its review
            self._event(c.StepCancelled, step_id=PLAN_GATE, reason="not run: " + self.ending[0])
        if self.status == "compensating":
            self._next_compensation(now)
            return
        if self.ending is None and not self.paused:
            self._start_ready(now)
            while self.coordinated and self.ending is None:  # steps done at dispatch free more
                self.coordinated = False
                self._start_ready(now)
        if self.ending is not None:
            self._skip_pending("not run: " + self.ending[0])
            self._close_gates("not run: " + self.ending[0])
        if not any(r.status in STEP_ACTIVE for r in self.steps.values()):
            if self.ending is None and all(r.status in STEP_DONE for r in self.steps.values()):
                self._finish_success()
            elif self.ending is not None:
                self._begin_compensation(now)

    def _start_ready(self, now: datetime) -> None:
        assert self.plan is not None
        running = sum(1 for r in self.steps.values() if r.status in STEP_ACTIVE)
        for step in self.plan.steps:
            run = self.steps[step.id]
            if run.status != "pending":
                continue
            needs = [self.steps[d].status for d in self.needs[step.id]]
            if any(s in {"skipped", "failed", "cancelled"} for s in needs):
                self._event(c.StepSkipped, step_id=step.id, reason="a dependency did not succeed")
                continue
            if any(s != "succeeded" for s in needs) or running >= self.plan.max_parallel:
                continue
            if step.when and not self._condition(step):
                self._event(
                    c.StepSkipped, step_id=step.id, reason=f"condition is false: {step.when}"
                )
                continue
            if self.ending is not None:
                return
            self._dispatch(step.id, now)
            running += 1

    def _condition(self, step: Step) -> bool:
        try:
            return evaluate_condition(str(step.when), self._scope())
        except (ReferenceError_, ValueError):
            return False

    def _dispatch(
        self,
        step_id: str,
        now: datetime,
        kind: c.StepKind = "run",
        rate_at: datetime | None = None,
    ) -> None:
        assert self.plan is not None
        step, run = self.plan.step(step_id), self.steps[step_id]
        if kind == "compensate":
            assert step.compensate is not None
            call, attempt = step.compensate.model_dump(), run.attempt  # compensation is not retried
        else:
            call, attempt = _variant_call(step, run.variant), run.attempt + 1
        try:
            tool_input = resolve(call["input"], self._scope())
        except ReferenceError_ as exc:
            self._event(
                c.StepFailed,
                step_id=step_id,
                attempt=attempt,
                kind=kind,
                error=f"input reference: {exc}",
                final=True,
            )
            self._on_final_failure(step_id, kind, f"input reference: {exc}")
            return
        key = f"{self.id}:{step_id}" + (":compensate" if kind == "compensate" else "")
        simulated = self.simulation is not None  # no gates, no admission (see simulate.py)
        if kind == "run" and run.variant == 0:
            if not simulated and self._held_at_gate(step, run, tool_input):
                return
            if run.approved_input is not None:
                tool_input = run.approved_input  # as approved (or edited) by people
        if kind == "run" and self.coordinate(step_id, call["tool"], tool_input, attempt, now):
            return  # context, messages, cache hits: done here (coordination.py)
        if (
            kind == "run"
            and not simulated
            and not self._admitted(step, run, call["tool"], now, rate_at)
        ):
            return
        stand_in = simulate.directive(
            self.simulation, step, kind, call, tool_input, attempt, run.variant
        )
        inline = (
            None
            if simulate.replaced(stand_in)
            else self.inline(
                InlineCall(
                    call["tool"],
                    tool_input,
                    str(self.id),
                    step_id,
                    attempt,
                    key,
                    self.envelope.workspace_id,
                )
            )
        )
        self._event(
            c.StepDispatched,
            step_id=step_id,
            attempt=attempt,
            kind=kind,
            tool=call["tool"],
            input=tool_input,
            idempotency_key=key,
            timeout_s=step.timeout,
            variant=run.variant,
            simulated=stand_in,
            inline=inline is not None,
        )
        if inline is not None:  # ran already: its outcome is folded in by advance()
            self._settling.append((step_id, attempt, kind, inline))
            return
        after = step.timeout + DEADLINE_GRACE_S
        self.timers_set.append(
            Timer(
                _deadline_id(self.id, step_id, attempt),
                now + timedelta(seconds=after),
                {
                    "execution_id": str(self.id),
                    "kind": "deadline",
                    "task": kind,
                    "step_id": step_id,
                    "attempt": attempt,
                    "after_s": after,
                },
            )
        )

    # --- approval gates (the hitl service decides; the decision comes back as an event) -----------

    def _held_at_gate(self, step: Step, run: StepRun, tool_input: dict[str, Any]) -> bool:
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

    def _message(self, text: str | None) -> str | None:
        """The approver's message with its ``${steps…}`` values filled in, so they see what
        will be done; a value not known yet stays as written."""
        if text is None:
            return None
        try:
            return str(resolve(text, self._scope()))
        except ReferenceError_:
            return text

    def approval_granted(self, e: c.ApprovalGranted, now: datetime) -> None:
        if e.step_id == PLAN_GATE:
            self._plan_granted(e, now)
            return
        run = self.steps.get(e.step_id)
        if run is None or run.approval != "pending" or self.status in TERMINAL:
            return  # decided already, or the step was cancelled meanwhile
        self._event(
            c.StepApproved,
            step_id=e.step_id,
            approval_id=e.aggregate_id,
            input=e.input,
            edited=e.edited,
            by=e.by,
        )
        self.advance(now)

    def approval_rejected(self, e: c.ApprovalRejected, now: datetime) -> None:
        assert self.plan is not None
        if e.step_id == PLAN_GATE:
            if self.reviewing and self.status not in TERMINAL:
                self._event(c.ExecutionFailed, error=f"plan rejected: {e.reason}")
            return
        run = self.steps.get(e.step_id)
        if run is None or run.approval != "pending" or self.status in TERMINAL:
            return
        step = self.plan.step(e.step_id)
        error = f"approval rejected: {e.reason}"
        policy = step.approval or ApprovalPolicy()
        if policy.alternatives_on_reject and step.alternatives:
            self._event(
                c.StepFailed, step_id=e.step_id, attempt=run.attempt, error=error, next_variant=1
            )
            self._dispatch(e.step_id, now)
        else:  # for good: no retries; the saga compensates what was done
            self._event(
                c.StepFailed, step_id=e.step_id, attempt=run.attempt, error=error, final=True
            )
            self._on_final_failure(e.step_id, "run", error)
        self.advance(now)

    def _plan_granted(self, e: c.ApprovalGranted, now: datetime) -> None:
        """Run the plan as reviewed; an edited plan is validated like any plan."""
        if not self.reviewing or self.status in TERMINAL:
            return
        try:
            plan = validate_plan(e.input.get("plan") or {}, inputs=self.inputs)
        except PlanInvalid as exc:
            self._event(c.ExecutionFailed, error=f"the reviewed plan is not valid: {exc}")
            return
        self._event(
            c.PlanApproved,
            approval_id=e.aggregate_id,
            plan=plan.model_dump(mode="json"),
            edited=e.edited,
            by=e.by,
        )
        self.advance(now)

    def _close_gates(self, reason: str) -> None:
        """An ending execution cancels steps still at their gates (the hitl service closes them)."""
        for step_id, run in self.steps.items():
            if run.status == "waiting_approval":
                self._event(c.StepCancelled, step_id=step_id, reason=reason)

    # --- admission: locks, quotas and rates ---------------------------------------------------------

    def _admitted(
        self, step: Step, run: StepRun, tool: str, now: datetime, rate_at: datetime | None
    ) -> bool:
        """Ask the admission port; on "not now", record the wait (or fail by the lock policy)."""
        try:
            locks = self._claims(step)
        except ReferenceError_ as exc:
            self._fail_unrun(step.id, run, f"lock name: {exc}")
            return False
        ask = Ask(
            holder=f"{self.id}:{step.id}",
            workspace=self.envelope.workspace_id,
            tool=tool,
            locks=locks,
            lease_until=now + timedelta(seconds=step.timeout + DEADLINE_GRACE_S),
            wake_timer=_admit_id(self.id, step.id),
            wake=self._admit_payload(step.id, run.attempt, None),
            ticket=run.ticket,
            rate_at=rate_at,
            execution_wake_timer=f"admit:{self.id}:*",
            execution_wake={"execution_id": str(self.id), "kind": "admit_all"},
        )
        answer = self.admission.admit(ask, now)
        if isinstance(answer, Admitted):
            self.timers_clear.append(ask.wake_timer)
            return True
        self._wait(step, run, answer, locks, now)
        return False

    def _claims(self, step: Step) -> tuple[Claim, ...]:
        """The step's locks with their names resolved; one claim per name (exclusive wins)."""
        modes: dict[str, str] = {}
        for lock in step.locks:
            name = str(resolve(lock.name, self._scope()))
            modes[name] = "exclusive" if "exclusive" in (lock.mode, modes.get(name)) else "shared"
        return tuple(Claim(n, modes[n]) for n in sorted(modes))

    def _wait(
        self, step: Step, run: StepRun, answer: Wait, locks: tuple[Claim, ...], now: datetime
    ) -> None:
        until = answer.until
        if answer.waiting_for == "locks":
            limit = min(lock.wait_timeout_s for lock in step.locks)
            since = run.waiting_since or now
            if any(lock.policy == "fail" for lock in step.locks):
                self._fail_unrun(step.id, run, f"{answer.reason} (lock policy: fail)")
                return
            if (now - since).total_seconds() >= limit:
                self._fail_unrun(step.id, run, f"waited {limit:g}s: {answer.reason}")
                return
            until = min(until, since + timedelta(seconds=limit))
        if run.status != "waiting" or run.waiting != (answer.waiting_for, answer.holders):
            self._event(
                c.StepWaiting,
                step_id=step.id,
                waiting_for=answer.waiting_for,
                reason=answer.reason,
                locks=[claim.name for claim in locks],
                holders=list(answer.holders),
                until=until,
                ticket=answer.ticket,
            )
        payload = self._admit_payload(step.id, run.attempt, answer.rate_at)
        self.timers_set.append(Timer(_admit_id(self.id, step.id), until, payload))

    def _fail_unrun(self, step_id: str, run: StepRun, error: str) -> None:
        """A step that cannot start fails for good: retrying would ask the same question."""
        self.timers_clear.append(_admit_id(self.id, step_id))
        self._event(c.StepFailed, step_id=step_id, attempt=run.attempt, error=error, final=True)
        self._on_final_failure(step_id, "run", error)

    def _admit_payload(
        self, step_id: str, attempt: int, rate_at: datetime | None
    ) -> dict[str, Any]:
        return {
            "execution_id": str(self.id),
            "kind": "admit",
            "step_id": step_id,
            "attempt": attempt,
            "rate_at": rate_at.isoformat() if rate_at else None,
        }

    def _failed(
        self,
        step_id: str,
        kind: str,
        error: str,
        retryable: bool,
        now: datetime,
        retry_after_s: float = 0.0,
    ) -> None:
        assert self.plan is not None
        step, run = self.plan.step(step_id), self.steps[step_id]
        if kind == "compensate":
            self._event(
                c.StepFailed,
                step_id=step_id,
                attempt=run.attempt,
                kind="compensate",
                error=error,
                final=True,
            )
            return
        attempts_left = retryable and run.attempt < step.retry.max_attempts
        if attempts_left:
            delay = max(_backoff(step, run.attempt, self._rng), retry_after_s)
            delay = simulate.retry_delay(self.simulation, delay)
            retry_at = now + timedelta(seconds=delay)
            self._event(
                c.StepFailed, step_id=step_id, attempt=run.attempt, error=error, retry_at=retry_at
            )
            if step.locks:  # its locks are held through the wait: their lease must outlast it
                lease = retry_at + timedelta(seconds=step.timeout + DEADLINE_GRACE_S)
                self.admission.extend(f"{self.id}:{step_id}", lease)
            self.timers_set.append(
                Timer(
                    _retry_id(self.id, step_id, run.attempt),
                    retry_at,
                    {
                        "execution_id": str(self.id),
                        "kind": "retry",
                        "step_id": step_id,
                        "attempt": run.attempt,
                    },
                )
            )
        elif run.variant < len(step.alternatives):
            self._event(
                c.StepFailed,
                step_id=step_id,
                attempt=run.attempt,
                error=error,
                next_variant=run.variant + 1,
            )
            self._dispatch(step_id, now)
        else:
            self._event(c.StepFailed, step_id=step_id, attempt=run.attempt, error=error, final=True)
            self._on_final_failure(step_id, "run", error)

    def _on_final_failure(self, step_id: str, kind: str, error: str) -> None:
        if kind == "run" and self.ending is None:
            self.ending = ("failed", f"step {step_id!r} failed: {error}", step_id)

    def _skip_pending(self, reason: str) -> None:
        for step_id, run in self.steps.items():
            if run.status in {"pending", "waiting"}:
                self.timers_clear.append(_admit_id(self.id, step_id))
                self._event(c.StepSkipped, step_id=step_id, reason=reason)

    def _begin_compensation(self, now: datetime) -> None:
        assert self.plan is not None and self.ending is not None
        todo = [s for s in reversed(self.completed) if self.plan.step(s).compensate is not None]
        if not todo:
            self._finish_unsuccessfully()
            return
        self._event(c.CompensationStarted, reason=self.ending[1], steps=todo)
        self._next_compensation(now)

    def _next_compensation(self, now: datetime) -> None:
        for step_id in self.compensating:
            state = self.steps[step_id].compensation
            if state == "running":
                return  # one at a time, in reverse order of completion
            if state is None:
                self._dispatch(step_id, now, kind="compensate")
                return
        self._finish_unsuccessfully()

    def _finish_success(self) -> None:
        assert self.plan is not None
        scope = self._scope()
        if self.plan.outputs:
            try:
                outputs = resolve(self.plan.outputs, scope)
            except ReferenceError_ as exc:
                self._event(c.ExecutionFailed, error=f"plan outputs: {exc}")
                return
        else:
            needed = {d for deps in self.needs.values() for d in deps}
            outputs = {
                s: r.output
                for s, r in self.steps.items()
                if s not in needed and r.status == "succeeded"
            }
        self._event(c.ExecutionSucceeded, outputs=outputs)

    def _finish_unsuccessfully(self) -> None:
        assert self.ending is not None
        outcome, reason, failed_step = self.ending
        if outcome == "cancelled":
            self._event(c.ExecutionCancelled, reason=reason)
        else:
            self._event(c.ExecutionFailed, error=reason, failed_step=failed_step)

    # --- helpers ----------------------------------------------------------------------------------

    def _awaiting(self, run: StepRun, kind: str) -> bool:
        return run.compensation == "running" if kind == "compensate" else run.status == "running"

    def _scope(self) -> dict[str, Any]:
        return {
            "input": self.inputs,
            "steps": {s: {"output": r.output, "status": r.status} for s, r in self.steps.items()},
        }

    def _event(self, event_class: type[Event], **fields: Any) -> Event:
        event = self.trigger(event_class, **self.envelope.fields(), **fields)
        ws = self.envelope.workspace_id
        if isinstance(event, c.ExecutionSucceeded | c.ExecutionFailed | c.ExecutionCancelled):
            self.admission.release(str(self.id), ws)  # it no longer writes anything
        if _ends_step(event):  # whatever the step held (locks, its in-flight place) is freed
            self.admission.release(f"{self.id}:{event.step_id}", ws)  # type: ignore[attr-defined]
        elif isinstance(event, c.StepFailed) and event.kind == "run":
            self.admission.release(f"{self.id}:{event.step_id}", ws, locks=False)
        return event

    def collect_timers(self) -> tuple[list[Timer], list[str]]:
        timers, clear = self.timers_set, self.timers_clear
        self.timers_set, self.timers_clear = [], []
        set_ids = {t.timer_id for t in timers}
        return timers, [t for t in clear if t not in set_ids]

    # --- state from events ------------------------------------------------------------------------

    def on_conflict_detected(self, e: c.ExecutionConflictDetected) -> None:
        self.conflicts.update(e.resources)

    def on_started(self, e: c.ExecutionStarted) -> None:
        self.plan = self._parsed or Plan.model_validate(e.plan)
        self._parsed = None
        self.needs = {s.id: s.needs() for s in self.plan.steps}
        self.inputs = dict(e.inputs)
        self.steps = {s.id: StepRun() for s in self.plan.steps}
        self.status = "running"
        self.simulation = Simulation.model_validate(e.simulation) if e.simulation else None
        self.envelope = Envelope(
            e.workspace_id, e.correlation_id or self.id, e.causation_id, e.traceparent
        )

    def on_step_dispatched(self, e: c.StepDispatched) -> None:
        run = self.steps[e.step_id]
        if e.kind == "compensate":
            run.compensation = "running"
        else:
            run.status, run.attempt, run.variant, run.error = "running", e.attempt, e.variant, None
            run.waiting = run.waiting_since = run.ticket = None

    def on_step_waiting(self, e: c.StepWaiting) -> None:
        run = self.steps[e.step_id]
        run.status, run.waiting = "waiting", (e.waiting_for, tuple(e.holders))
        run.waiting_since = run.waiting_since or e.occurred_at
        run.ticket = e.ticket if e.ticket is not None else run.ticket

    def on_step_succeeded(self, e: c.StepSucceeded) -> None:
        run = self.steps[e.step_id]
        if e.kind == "compensate":
            run.compensation = "compensated"
            return
        run.status, run.output = "succeeded", e.output
        self.completed.append(e.step_id)

    def on_step_failed(self, e: c.StepFailed) -> None:
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
            run.status = "retry_wait"
        elif e.next_variant is not None:
            run.variant = e.next_variant

    def on_approval_requested(self, e: c.StepApprovalRequested) -> None:
        if e.step_id == PLAN_GATE:
            self.reviewing = True
            return
        run = self.steps[e.step_id]
        run.status, run.approval = "waiting_approval", "pending"

    def on_plan_approved(self, e: c.PlanApproved) -> None:
        self.plan = Plan.model_validate(e.plan)
        self.needs = {s.id: s.needs() for s in self.plan.steps}
        self.steps = {s.id: StepRun() for s in self.plan.steps}
        self.reviewing = False

    def on_step_approved(self, e: c.StepApproved) -> None:
        run = self.steps[e.step_id]
        run.status, run.approval, run.approved_input = "pending", "granted", dict(e.input)

    def on_step_skipped(self, e: c.StepSkipped) -> None:
        self.steps[e.step_id].status = "skipped"

    def on_step_cancelled(self, e: c.StepCancelled) -> None:
        if e.step_id == PLAN_GATE:
            self.reviewing = False
            return
        self.steps[e.step_id].status = "cancelled"

    def on_cancelling(self, e: c.ExecutionCancelling) -> None:
        self.ending = ("cancelled", e.reason or "cancelled on request", None)

    def on_paused(self, _e: c.ExecutionPaused) -> None:
        self.paused = True

    def on_resumed(self, _e: c.ExecutionResumed) -> None:
        self.paused = False

    def on_compensation_started(self, e: c.CompensationStarted) -> None:
        self.status = "compensating"
        self.compensating = list(e.steps)

    def on_succeeded(self, _e: Event) -> None:
        self.status = "succeeded"

    def on_failed(self, _e: Event) -> None:
        self.status = "failed"

    def on_cancelled(self, _e: Event) -> None:
        self.status = "cancelled"


def _variant_call(step: Step, variant: int) -> dict[str, Any]:
    if variant == 0:
        return {"tool": step.tool, "input": step.input}
    alt = step.alternatives[variant - 1]
    return {"tool": alt.tool, "input": alt.input}


def _backoff(step: Step, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with jitter, capped."""
    base = min(step.retry.max_backoff_s, step.retry.backoff_s * 2 ** (attempt - 1))
    return max(0.0, base * (1 + rng.uniform(-step.retry.jitter, step.retry.jitter)))


def _deadline_id(execution_id: UUID, step_id: str, attempt: int) -> str:
    return f"deadline:{execution_id}:{step_id}:{attempt}"


def _retry_id(execution_id: UUID, step_id: str, attempt: int) -> str:
    return f"retry:{execution_id}:{step_id}:{attempt}"


def _known(prefix: str, value: Any, scope: dict[str, Any]) -> str | None:
    try:
        return prefix + str(resolve(value, scope))
    except ReferenceError_:
        return None


def _write_target(
    workspace: str, tool: str, tool_input: dict[str, Any], scope: dict[str, Any]
) -> str | None:
    if tool in ("files.write", "files.delete"):
        return _known(f"file:{workspace}/", tool_input.get("path"), scope)
    if tool == "http.request" and str(tool_input.get("method", "GET")).upper() not in (
        "GET",
        "HEAD",
    ):
        return _known("url:", tool_input.get("url"), scope)
    return None


def _admit_id(execution_id: UUID, step_id: str) -> str:
    return f"admit:{execution_id}:{step_id}"


def _ends_step(event: Event) -> bool:
    if isinstance(event, c.StepCancelled | c.StepSkipped):
        return True
    if isinstance(event, c.StepSucceeded):
        return event.kind == "run"
    return isinstance(event, c.StepFailed) and event.kind == "run" and event.final
