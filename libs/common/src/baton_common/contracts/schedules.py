"""Schedules and triggers (the scheduler)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

from baton_common.events import Event

Json = dict[str, Any]


# --- schedules and triggers (owned by the scheduler) ----------------------------------------------
# A schedule's and a trigger's life (created, updated, paused, unpaused, deleted) and what each
# tick or matching event did. Starts go to the gateway as ``intake.start_requested`` on a run
# record whose id is the execution's, so a tick or an event starts at most one execution.
# Schedules and triggers share the shapes of their life: a definition set, a pause with a note.


class _Defined(Event):
    """A schedule's or trigger's definition, set whole (created or updated)."""

    name: str
    definition: Json


class _Noted(Event):
    """Paused or unpaused, with a person's ``note`` saying why."""

    note: str | None = None


class ScheduleCreated(_Defined):
    """A schedule: when (cron, interval or one time, in a zone), what to start, and its policies."""

    TYPE = "schedule.created"
    anchor: datetime  # ticks are counted from here: the first one is after it


class ScheduleUpdated(_Defined):
    """A new definition; ticks go on from ``anchor`` (now): none before it are caught up."""

    TYPE = "schedule.updated"
    anchor: datetime


class SchedulePaused(_Noted):
    """No ticks until unpaused; ``note`` says why."""

    TYPE = "schedule.paused"


class ScheduleUnpaused(_Noted):
    """Ticks again, from ``resume_from``: the ticks of the pause are not caught up."""

    TYPE = "schedule.unpaused"
    resume_from: datetime


class ScheduleDeleted(Event):
    """Gone: no more ticks, not listed."""

    TYPE = "schedule.deleted"


class _Tick(Event):
    """What became of one tick, due at ``scheduled_for``."""

    scheduled_for: datetime


class ScheduleFired(_Tick):
    """A tick (or trigger-now, a backfill, a buffered tick) asked for an execution."""

    TYPE = "schedule.fired"
    fired_at: datetime
    execution_id: UUID
    idempotency_key: str
    reason: Literal["tick", "catchup", "manual", "backfill", "buffered"] = "tick"


class ScheduleTickSkipped(_Tick):
    """A due tick started nothing: its overlap policy said so (``reason``)."""

    TYPE = "schedule.tick_skipped"
    reason: str


class ScheduleTickBuffered(_Tick):
    """``buffer_one``: the tick waits for the running execution to end."""

    TYPE = "schedule.tick_buffered"


class ScheduleTicksMissed(Event):
    """Ticks that were not run (downtime past the catch-up window, or the catch-up policy)."""

    TYPE = "schedule.ticks_missed"
    count: int
    first: datetime
    last: datetime
    reason: str


class ScheduleRunEnded(Event):
    """An execution the schedule started ended: it no longer counts for overlap."""

    TYPE = "schedule.run_ended"
    execution_id: UUID
    status: str


class ScheduleCompleted(Event):
    """No tick will come again (one time done, end date passed, max runs reached)."""

    TYPE = "schedule.completed"
    reason: str


class TriggerCreated(_Defined):
    """A trigger: an event filter and what to start when an event matches."""

    TYPE = "trigger.created"


class TriggerUpdated(_Defined):
    """A new definition for the events that come next."""

    TYPE = "trigger.updated"


class TriggerPaused(_Noted):
    """Matching events start nothing until unpaused."""

    TYPE = "trigger.paused"


class TriggerUnpaused(_Noted):
    """Matching events start executions again."""

    TYPE = "trigger.unpaused"


class TriggerDeleted(Event):
    """Gone: matches nothing, not listed."""

    TYPE = "trigger.deleted"


class _Matched(Event):
    """What a trigger did about one event that matched its filter."""

    event_id_matched: UUID
    event_type: str


class TriggerFired(_Matched):
    """An event matched: an execution was asked for, carrying the chain of triggers so far."""

    TYPE = "trigger.fired"
    execution_id: UUID
    idempotency_key: str
    trigger_chain: list[str] = Field(default_factory=list)
    reason: Literal["event", "manual"] = "event"


class TriggerLoopStopped(_Matched):
    """An event matched, but starting would loop (the trigger fired on its own output, or the
    chain is deeper than allowed): nothing was started."""

    TYPE = "trigger.loop_stopped"
    trigger_chain: list[str]
    reason: str


class TriggerSkipped(_Matched):
    """An event matched but nothing could start (an input's reference is missing)."""

    TYPE = "trigger.skipped"
    reason: str


class SchedulerCall(BaseModel):
    """A request to the scheduler over NATS request/reply (the gateway's routes send them):
    ``op`` on ``kind`` (schedule, trigger) in the caller's workspace."""

    model_config = ConfigDict(extra="forbid")
    op: str
    kind: Literal["schedule", "trigger"]
    workspace_id: str
    actor: str | None = None
    id: str | None = None
    body: Json = Field(default_factory=dict)


class SchedulerReply(BaseModel):
    """The scheduler's answer: an HTTP-like status, a reason, and a body."""

    status: int
    detail: str | None = None
    body: Json = Field(default_factory=dict)


def execution_id_for_key(workspace_id: str, idempotency_key: str) -> UUID:
    """The execution the gateway records for this key (its rule, repeated here so a service can
    know the id before the gateway has seen the request)."""
    return uuid5(NAMESPACE_URL, f"baton:{workspace_id}:{idempotency_key}")


def scheduler_subject(root: str) -> str:
    """The request/reply subject of the scheduler (queue group ``scheduler``)."""
    return f"{root}_rpc.scheduler"
