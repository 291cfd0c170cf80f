# mypy: disable-error-code="misc"
"""Admission of the Execution aggregate: a ready step asks the admission port (locks, rates,
quotas, places in flight) and, told "not now", records what it waits for and sets its wake-up."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from baton_common import contracts as c
from baton_common.plans import (
    ReferenceError_,
    Step,
    resolve,
)
from baton_common.store import Timer

from baton_executor.ports import Admitted, Ask, Claim, Wait
from baton_executor.state import (
    DEADLINE_GRACE_S,
    StepRun,
    _admit_id,
    calendar_locks,
)

IMPLIED_WAIT_S = 600.0  # a lock the tool implies waits as long as a declared one does by default

if TYPE_CHECKING:
    from baton_executor.domain import Execution


class Admitting:
    """A part of ``Execution`` (domain.py); its methods run on an Execution."""

    def _admitted(
        self: Execution,
        step: Step,
        run: StepRun,
        tool: str,
        now: datetime,
        rate_at: datetime | None,
        inline: bool = False,
        tool_input: dict[str, Any] | None = None,
    ) -> bool:
        """Ask the admission port; on "not now", record the wait (or fail by the lock policy)."""
        try:
            locks = self._claims(step, calendar_locks(tool, tool_input or {}))
        except ReferenceError_ as exc:
            self._fail_unrun(step.id, run, f"lock name: {exc}")
            return False
        ask = Ask(
            holder=f"{self.sid}:{step.id}",
            workspace=self.envelope.workspace_id,
            tool=tool,
            locks=locks,
            lease_until=now + timedelta(seconds=step.timeout + DEADLINE_GRACE_S),
            wake_timer=_admit_id(self.sid, step.id),
            wake=self._admit_payload(step.id, run.attempt, None),
            ticket=run.ticket,
            rate_at=rate_at,
            execution_wake_timer=f"admit:{self.sid}:*",
            execution_wake={"execution_id": self.sid, "kind": "admit_all"},
            inline=inline,
        )
        answer = self.admission.admit(ask, now)
        if isinstance(answer, Admitted):
            if run.status == "waiting":  # only a step that waited has a wake-up set
                self.timers_clear.append(ask.wake_timer)
            run.holds, run.place_until = answer.holds_step, answer.place_until
            if answer.holds_execution:
                self.holds_claims = True
            return True
        self._wait(step, run, answer, locks, now)
        return False

    def _claims(self: Execution, step: Step, implied: list[str]) -> tuple[Claim, ...]:
        """The step's locks with their names resolved, and the exclusive ones its tool implies
        (the calendars a booking writes); one claim per name (exclusive wins)."""
        modes: dict[str, str] = dict.fromkeys(implied, "exclusive")
        for lock in step.locks:
            name = str(resolve(lock.name, self._scope()))
            modes[name] = "exclusive" if "exclusive" in (lock.mode, modes.get(name)) else "shared"
        return tuple(Claim(n, modes[n]) for n in sorted(modes))

    def _wait(
        self: Execution,
        step: Step,
        run: StepRun,
        answer: Wait,
        locks: tuple[Claim, ...],
        now: datetime,
    ) -> None:
        until = answer.until
        run.awaiting_place = answer.place
        if answer.waiting_for == "locks":
            limit = min((lock.wait_timeout_s for lock in step.locks), default=IMPLIED_WAIT_S)
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
        self.timers_set.append(Timer(_admit_id(self.sid, step.id), until, payload))

    def _fail_unrun(self: Execution, step_id: str, run: StepRun, error: str) -> None:
        """A step that cannot start fails for good: retrying would ask the same question."""
        self.timers_clear.append(_admit_id(self.sid, step_id))
        self._event(c.StepFailed, step_id=step_id, attempt=run.attempt, error=error, final=True)
        self._on_final_failure(step_id, "run", error)

    def _admit_payload(
        self: Execution, step_id: str, attempt: int, rate_at: datetime | None
    ) -> dict[str, Any]:
        return {
            "execution_id": self.sid,
            "kind": "admit",
            "step_id": step_id,
            "attempt": attempt,
            "rate_at": rate_at.isoformat() if rate_at else None,
        }
