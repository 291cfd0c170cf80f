# mypy: disable-error-code="misc"
"""How steps and executions end: a failed attempt retries, falls back to an alternative or gives
up; an ending execution skips what is left, compensates what it did in reverse order, and records
its outcome."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from baton_common import contracts as c
from baton_common.limits import TooLarge, check_size, one_event
from baton_common.plans import (
    ReferenceError_,
    resolve,
)
from baton_common.store import Timer

from baton_executor import simulate
from baton_executor.state import (
    DEADLINE_GRACE_S,
    _admit_id,
    _backoff,
    _retry_id,
    calendar_locks,
)

if TYPE_CHECKING:
    from baton_executor.domain import Execution


class Endings:
    """A part of ``Execution`` (domain.py); its methods run on an Execution."""

    ending: tuple[str, str, str | None] | None  # (outcome, reason, failed step)

    def _failed(
        self: Execution,
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
            delay = simulate.retry_delay(self.simulation, delay)  # a replay does not wait
            retry_at = now + timedelta(seconds=delay)
            self._event(
                c.StepFailed, step_id=step_id, attempt=run.attempt, error=error, retry_at=retry_at
            )
            if step.locks or calendar_locks(step.tool, step.input):
                # its locks are held through the wait: their lease must outlast it
                lease = retry_at + timedelta(seconds=step.timeout + DEADLINE_GRACE_S)
                self.admission.extend(f"{self.sid}:{step_id}", lease)
            self.timers_set.append(
                Timer(
                    _retry_id(self.sid, step_id, run.attempt),
                    retry_at,
                    {
                        "execution_id": self.sid,
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
            )  # ready with it: advance starts it as any ready step (not while paused)
        else:
            self._event(c.StepFailed, step_id=step_id, attempt=run.attempt, error=error, final=True)
            self._on_final_failure(step_id, "run", error)

    def _on_final_failure(self: Execution, step_id: str, kind: str, error: str) -> None:
        if kind == "run" and self.ending is None:
            self.ending = ("failed", f"step {step_id!r} failed: {error}", step_id)

    def _skip_pending(self: Execution, reason: str) -> None:
        for step_id, run in self.steps.items():
            if run.status in {"pending", "waiting"}:
                self.timers_clear.append(_admit_id(self.sid, step_id))
                self._event(c.StepSkipped, step_id=step_id, reason=reason)

    def _begin_compensation(self: Execution, now: datetime) -> None:
        assert self.plan is not None and self.ending is not None
        todo = [s for s in reversed(self.completed) if self.plan.step(s).compensate is not None]
        if not todo:
            self._finish_unsuccessfully()
            return
        self._event(c.CompensationStarted, reason=self.ending[1], steps=todo)
        self._next_compensation(now)

    def _next_compensation(self: Execution, now: datetime) -> None:
        for step_id in self.compensating:
            state = self.steps[step_id].compensation
            if state == "running":
                return  # one at a time, in reverse order of completion
            if state is None:
                self._dispatch(step_id, now, kind="compensate")
                return
        self._finish_unsuccessfully()

    def _finish_success(self: Execution) -> None:
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
        try:  # the outputs of many steps in one event: what one event may carry
            check_size("outputs", outputs, one_event())
        except TooLarge as exc:
            error = f"{exc} (what one event may carry, BATON_MAX_EVENT_BYTES)"
            self._event(c.ExecutionFailed, error=error)
            return
        self._event(c.ExecutionSucceeded, outputs=outputs)

    def _finish_unsuccessfully(self: Execution) -> None:
        assert self.ending is not None
        outcome, reason, failed_step = self.ending
        if outcome == "cancelled":
            self._event(c.ExecutionCancelled, reason=reason)
        else:
            self._event(c.ExecutionFailed, error=reason, failed_step=failed_step)
