# mypy: disable-error-code="misc"
"""Durable sleeps and parking of the Execution aggregate.

A ``time.sleep`` step of a second or more is not a task a worker holds for its whole length (a
worker slot and an asyncio task each, lost with the worker): it is one row in the executor's
timer table, due when the sleep ends, and the step succeeds when it fires. A shorter sleep still
goes to a worker: a timer's round trip would cost more than it saves.

An execution whose every started step waits on something outside the process (a person's
decision, a timer, a place in a queue) is *parked*: the application forgets it and loads it
from the store when a decision, a timer or a command wakes it, so 10,000 waiting executions
cost rows in PostgreSQL, not objects in the executor.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from baton_common import contracts as c
from baton_common.store import Timer

from baton_executor.inline import InlineResult
from baton_executor.state import DEADLINE_GRACE_S, StepRun

if TYPE_CHECKING:
    from baton_executor.domain import Execution

SLEEP_TOOL = "time.sleep"
DURABLE_SLEEP_S = 1.0  # a sleep this long or longer is a timer row, not a worker's task
SLEEP_TIMER = "sleep"


def _sleep_id(execution_id: str, step_id: str, attempt: int) -> str:
    return f"sleep:{execution_id}:{step_id}:{attempt}"


class Sleeping:
    """A part of ``Execution`` (domain.py); its methods run on an Execution."""

    def _sleeps_durably(self: Execution, tool: str, tool_input: dict[str, Any]) -> bool:
        """A real (not rehearsed) sleep long enough to be worth a timer."""
        if tool != SLEEP_TOOL or self.simulation is not None:
            return False
        seconds = tool_input.get("seconds")
        return isinstance(seconds, int | float) and seconds >= DURABLE_SLEEP_S

    def _sleep(
        self: Execution, step_id: str, attempt: int, call: c.StepCall, now: datetime
    ) -> None:
        """Dispatch the sleep to no worker (``inline``: the executor settles it) and set the
        timer that ends it; both are in this command's commit."""
        seconds = float(call.input["seconds"])
        self._event(
            c.StepDispatched,
            step_id=step_id,
            attempt=attempt,
            kind="run",
            inline=True,
            **dict(call),
        )
        payload = {"execution_id": self.sid, "kind": SLEEP_TIMER, "step_id": step_id,
                   "attempt": attempt, "seconds": seconds}  # fmt: skip
        due = now + timedelta(seconds=seconds)
        self.timers_set.append(Timer(_sleep_id(self.sid, step_id, attempt), due, payload))
        if self.steps[step_id].holds:  # its locks are held until it wakes, however long
            lease = due + timedelta(seconds=DEADLINE_GRACE_S)
            self.admission.extend(f"{self.sid}:{step_id}", lease)

    def sleep_timer(self: Execution, payload: dict[str, Any], now: datetime) -> bool:
        """A sleep's timer fired: its step succeeds (once: a late or repeated firing of an
        attempt already settled or cancelled does nothing). False: not a sleep's timer."""
        if payload.get("kind") != SLEEP_TIMER:
            return False
        seconds = float(payload["seconds"])
        slept = InlineResult(ok=True, output={"slept": seconds}, duration_ms=seconds * 1000)
        self._settle(payload["step_id"], int(payload["attempt"]), "run", slept, now)
        self.advance(now)
        return True

    def _clear_sleep(self: Execution, step_id: str, run: StepRun) -> None:
        if _sleeping(run):
            self.timers_clear.append(_sleep_id(self.sid, step_id, run.attempt))

    def parked(self: Execution) -> bool:
        """Nothing of it happens in this process until something outside wakes it: it runs,
        nothing waits for a commit here, and every started step waits for a person, a timer, a
        lock or a rate (no worker's result, no message is on its way). A step queued for a
        place keeps it in memory (``_awaiting_place``)."""
        if self.status != "running" or self.inline_due or self._settling:
            return False
        return not any(
            (r.status == "running" and not _sleeping(r)) or _awaiting_place(r)
            for r in self.steps.values()
        )


def _awaiting_place(run: StepRun) -> bool:
    """A step queued for a place among its workspace's steps in flight: a step that ends frees
    one soon, and the execution is woken then. Kept in memory (as a running one) rather than
    parked: read back from the store on every wake, it was the largest cost of saturation
    through workers (28% of the executor's profile at N=1,000 over the bound of 256)."""
    return run.status == "waiting" and run.awaiting_place


def _sleeping(run: StepRun) -> bool:
    """A step in a durable sleep: dispatched to no worker, its call a ``time.sleep``."""
    return (
        run.status == "running" and run.inline_call is not None and run.inline_call[1] == SLEEP_TOOL
    )
