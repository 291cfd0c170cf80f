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
from baton_common.events import Event
from baton_common.plans import Plan, ReferenceError_, Step, evaluate_condition, resolve
from baton_common.store import Timer

TERMINAL = {"succeeded", "failed", "cancelled"}
STEP_DONE = {"succeeded", "skipped", "failed", "cancelled"}
# A step's backstop deadline: its own timeout plus room for a worker to be replaced.
DEADLINE_GRACE_S = 60.0


class ExecutorError(Exception):
    """Base of the executor's domain errors."""


@dataclass
class StepRun:
    """One step's state within an execution."""

    status: str = "pending"  # pending|running|retry_wait|succeeded|failed|skipped|cancelled
    attempt: int = 0
    variant: int = 0  # 0 = the step's own tool, n = alternatives[n-1]
    output: Any = None
    error: str | None = None
    compensation: str | None = None  # None|running|compensated|failed


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


class Execution(Aggregate):
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

    # --- commands ---------------------------------------------------------------------------------

    def start(self, plan: Plan, inputs: dict[str, Any], request: str | None, now: datetime) -> None:
        self._parsed = plan  # spares on_started parsing the plan it was just given
        self._event(
            c.ExecutionStarted, plan=plan.model_dump(mode="json"), inputs=inputs, request=request
        )
        self.advance(now)

    def reject(self, error: str) -> None:
        """The plan cannot run here: the execution fails before it starts."""
        self._event(c.ExecutionFailed, error=error)

    def task_finished(self, result: c.TaskFinished, now: datetime) -> None:
        run = self.steps.get(result.step_id)
        if run is None or run.attempt != result.attempt or not self._awaiting(run, result.kind):
            return  # a late or duplicate result of an attempt already decided
        self.timers_clear.append(_deadline_id(self.id, result.step_id, result.attempt))
        if result.ok:
            self._event(
                c.StepSucceeded,
                step_id=result.step_id,
                attempt=result.attempt,
                kind=result.kind,
                output=result.output,
                duration_ms=result.duration_ms,
            )
        else:
            self._failed(
                result.step_id, result.kind, result.error or "failed", result.retryable, now
            )
        self.advance(now)

    def timer_fired(self, payload: dict[str, Any], now: datetime) -> None:
        step_id, attempt = payload["step_id"], int(payload["attempt"])
        run = self.steps.get(step_id)
        if run is None or run.attempt != attempt:
            return
        if payload["kind"] == "retry" and run.status == "retry_wait":
            self._dispatch(step_id, now)
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
            self.advance(now)

    def cancel(self, reason: str | None, now: datetime) -> None:
        if self.status in TERMINAL or self.ending is not None:
            return
        if self.plan is None:  # cancelled before its plan arrived
            self._event(c.ExecutionCancelled, reason=reason)
            return
        self._event(c.ExecutionCancelling, reason=reason)
        for step_id, run in self.steps.items():
            if run.status in {"running", "retry_wait"}:
                self.timers_clear.append(_deadline_id(self.id, step_id, run.attempt))
                self.timers_clear.append(_retry_id(self.id, step_id, run.attempt))
                self._event(c.StepCancelled, step_id=step_id, reason="execution cancelled")
        self.advance(now)

    # --- the scheduler ----------------------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        """Start what can start; when nothing more can, compensate or finish."""
        if self.plan is None or self.status in TERMINAL:
            return
        if self.status == "compensating":
            self._next_compensation(now)
            return
        if self.ending is None and not self.paused:
            self._start_ready(now)
        if self.ending is not None:
            self._skip_pending("not run: " + self.ending[0])
        if not any(r.status in {"running", "retry_wait"} for r in self.steps.values()):
            if self.ending is None and all(r.status in STEP_DONE for r in self.steps.values()):
                self._finish_success()
            elif self.ending is not None:
                self._begin_compensation(now)

    def _start_ready(self, now: datetime) -> None:
        assert self.plan is not None
        running = sum(1 for r in self.steps.values() if r.status in {"running", "retry_wait"})
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

    def _dispatch(self, step_id: str, now: datetime, kind: c.StepKind = "run") -> None:
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
        )
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

    def _failed(self, step_id: str, kind: str, error: str, retryable: bool, now: datetime) -> None:
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
            delay = _backoff(step, run.attempt, self._rng)
            retry_at = now + timedelta(seconds=delay)
            self._event(
                c.StepFailed, step_id=step_id, attempt=run.attempt, error=error, retry_at=retry_at
            )
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
            if run.status == "pending":
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
        return self.trigger(event_class, **self.envelope.fields(), **fields)

    def collect_timers(self) -> tuple[list[Timer], list[str]]:
        timers, clear = self.timers_set, self.timers_clear
        self.timers_set, self.timers_clear = [], []
        set_ids = {t.timer_id for t in timers}
        return timers, [t for t in clear if t not in set_ids]

    # --- state from events ------------------------------------------------------------------------

    def on_started(self, e: c.ExecutionStarted) -> None:
        self.plan = self._parsed or Plan.model_validate(e.plan)
        self._parsed = None
        self.needs = {s.id: s.needs() for s in self.plan.steps}
        self.inputs = dict(e.inputs)
        self.steps = {s.id: StepRun() for s in self.plan.steps}
        self.status = "running"
        self.envelope = Envelope(
            e.workspace_id, e.correlation_id or self.id, e.causation_id, e.traceparent
        )

    def on_step_dispatched(self, e: c.StepDispatched) -> None:
        run = self.steps[e.step_id]
        if e.kind == "compensate":
            run.compensation = "running"
        else:
            run.status, run.attempt, run.variant, run.error = "running", e.attempt, e.variant, None

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
        if e.final:
            run.status = "failed"
            self._on_final_failure(e.step_id, "run", e.error)
        elif e.retry_at is not None:
            run.status = "retry_wait"
        elif e.next_variant is not None:
            run.variant = e.next_variant

    def on_step_skipped(self, e: c.StepSkipped) -> None:
        self.steps[e.step_id].status = "skipped"

    def on_step_cancelled(self, e: c.StepCancelled) -> None:
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
