"""What an execution's state is made of (a step's run, the envelope its events share) and the
names and rules the Execution aggregate and its parts agree on: timer ids, backoff, write targets.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.plans import (
    ReferenceError_,
    Step,
    resolve,
)

TERMINAL = {"succeeded", "failed", "cancelled"}
STEP_DONE = {"succeeded", "skipped", "failed", "cancelled"}
STEP_ACTIVE = {"running", "retry_wait", "waiting"}  # started and not yet ended
MAX_CONFLICT_PEERS = 20  # other executions named in one conflict event
# A step's backstop deadline: its own timeout plus room for a worker to be replaced.
DEADLINE_GRACE_S = 60.0
# A pure step waits for the commit of the outcome it reads: if the executor died before
# dispatching it, the execution's resume timer does then (the executor does well before).
INLINE_RESUME_S = 3.0


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
    retry_at: datetime | None = None  # when its next attempt is due (status retry_wait)
    approval: str | None = None  # None|pending|granted|rejected: its gate, if it has one
    approved_input: dict[str, Any] | None = None  # what the approvers let it run with
    gate: UUID | None = None  # the gate it last waited at (its own, or a tool's question)
    # The attempt the executor runs itself, once the commit that dispatched it is done:
    # (kind, tool, input, idempotency key). Kept from the event, so a restart can run it.
    inline_call: tuple[str, str, dict[str, Any], str] | None = None
    # Whether it holds claims (locks, a place in flight) to give back when it ends. Unknown after
    # a restart: then it is given back anyway (a release of nothing is harmless, only slower).
    holds: bool = True
    # Until when its place in flight is held (the claim's lease): known only when this process
    # admitted it, never from the history (so not part of the state compared). Handed to the
    # admission when the step gives the place back (``Admission.release(held_until=…)``).
    place_until: datetime | None = field(default=None, compare=False)
    # Queued by this process for a place among its workspace's steps in flight (never from the
    # history): the execution stays in memory instead of parking (``Execution.parked``).
    awaiting_place: bool = field(default=False, compare=False)


@dataclass
class Envelope:
    """Envelope fields every event of one execution shares."""

    workspace_id: str
    correlation_id: UUID
    causation_id: UUID | None = None
    traceparent: str | None = None

    def fields(self) -> dict[str, Any]:
        """Every field by name, as an event's keyword arguments."""
        return dict(vars(self))


def _variant_call(step: Step, variant: int) -> dict[str, Any]:
    if variant == 0:
        return {"tool": step.tool, "input": step.input}
    alt = step.alternatives[variant - 1]
    return {"tool": alt.tool, "input": alt.input}


def _backoff(step: Step, attempt: int, rng: random.Random) -> float:
    """Exponential backoff with jitter, capped."""
    base = min(step.retry.max_backoff_s, step.retry.backoff_s * 2 ** (attempt - 1))
    return max(0.0, base * (1 + rng.uniform(-step.retry.jitter, step.retry.jitter)))


def _deadline_id(execution_id: UUID | str, step_id: str, attempt: int) -> str:
    return f"deadline:{execution_id}:{step_id}:{attempt}"


def _retry_id(execution_id: UUID | str, step_id: str, attempt: int) -> str:
    return f"retry:{execution_id}:{step_id}:{attempt}"


def _known(prefix: str, value: Any, scope: dict[str, Any]) -> str | None:
    try:
        return prefix + str(resolve(value, scope))
    except ReferenceError_:
        return None


def _write_targets(
    workspace: str, tool: str, tool_input: dict[str, Any], scope: dict[str, Any]
) -> list[str | None]:
    if tool in ("files.write", "files.delete"):
        return [_known(f"file:{workspace}/", tool_input.get("path"), scope)]
    if tool == "http.request" and str(tool_input.get("method", "GET")).upper() not in (
        "GET",
        "HEAD",
    ):
        return [_known("url:", tool_input.get("url"), scope)]
    try:
        booked = calendar_locks(tool, resolve(tool_input, scope))
    except ReferenceError_:
        return []
    return [f"lock:{workspace}:{name}" for name in booked]  # the same names as their locks


def calendar_locks(tool: str, tool_input: dict[str, Any]) -> list[str]:
    """The calendars a booking writes and checks for conflicts, as lock names: the calendar
    (the default one when none is named) and each room or piece of equipment it books. Two
    steps booking one of them run one after the other, so the second sees the first's event.
    An update locks its calendar only when it names it (the event's is not known before)."""
    if tool == "calendar.create_event":
        calendars = [tool_input.get("calendar") or "default", *(tool_input.get("resources") or [])]
    elif tool == "calendar.update_event" and tool_input.get("calendar"):
        calendars = [tool_input["calendar"]]
    else:
        return []
    return sorted({f"calendar:{name}" for name in calendars if isinstance(name, str)})


def _retry_due(run: StepRun, now: datetime) -> bool:
    """A retry whose time has come (its timer fired, or is about to) while the step waited."""
    return run.status == "retry_wait" and run.retry_at is not None and run.retry_at <= now


def _admit_id(execution_id: UUID | str, step_id: str) -> str:
    return f"admit:{execution_id}:{step_id}"


def _resume_id(execution_id: UUID | str) -> str:
    return f"resume:{execution_id}"


def _ends_step(event: Event) -> bool:
    if isinstance(event, c.StepCancelled | c.StepSkipped):
        return True
    if isinstance(event, c.StepSucceeded):
        return event.kind == "run"
    return isinstance(event, c.StepFailed) and event.kind == "run" and event.final


def _held_until(run: StepRun | None) -> datetime | None:
    """Until when the step's place in flight is held, if this process knows; asked once, when
    the place is given back."""
    if run is None:
        return None
    until, run.place_until = run.place_until, None
    return until
