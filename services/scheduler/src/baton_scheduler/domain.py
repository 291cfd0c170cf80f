"""Schedules and triggers: aggregates with no I/O. Commands in, events and start requests out.

A schedule keeps a cursor: every tick up to it was fired, skipped, buffered or recorded as
missed, and each of those is an event that moves it. So a tick is handled once by whichever
replica commits first (the store's version check refuses the other), and a restart goes on
from the cursor. Executions are asked for as ``Start`` intents; the application records each
as ``intake.start_requested`` on a run record named by the execution's id, in the same commit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.events import Event
from baton_common.plans import ReferenceError_, lookup, resolve
from baton_common.store import Timer

from baton_scheduler.spec import MAX_TICKS, ScheduleSpec, TriggerSpec

RECENT = 20  # ticks and firings kept for the views
MAX_CHAIN = 5  # triggers in a row an execution may descend from


class SchedulerError(Exception):
    """Base of the scheduler's domain errors; ``status`` is the HTTP-like answer."""

    status = 400


class NotFound(SchedulerError):
    status = 404


class Refused(SchedulerError):
    """A command the object does not take in its state (409)."""

    status = 409


class Invalid(SchedulerError):
    status = 422


@dataclass(frozen=True)
class Start:
    """An execution to ask the gateway for."""

    execution_id: UUID
    idempotency_key: str
    request: str | None
    plan: dict[str, Any] | None
    inputs: dict[str, Any]
    source: str
    schedule_id: str | None = None
    trigger_id: str | None = None
    trigger_chain: list[str] = field(default_factory=list)
    actor: str | None = None
    causation_id: UUID | None = None


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _time(value: str | None) -> Any:
    return datetime.fromisoformat(value) if value is not None else None


def tick_key(schedule_id: UUID, tick: datetime) -> str:
    """The idempotency key of a tick: one execution per schedule and scheduled time."""
    return f"schedule:{schedule_id}:{tick.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"


class Automation(Aggregate):
    """What schedules and triggers share: a name, a definition, paused or not, recent runs."""

    kind = ""
    EVENTS: dict[str, type[Event]] = {}

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.workspace_id = "default"
        self.name = ""
        self.definition: dict[str, Any] = {}
        self.status = "active"  # active | paused | completed | deleted
        self.note: str | None = None
        self.created_at: datetime | None = None
        self.updated_at: datetime | None = None
        self.recent: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.starts: list[Start] = []
        self.cancels: list[tuple[UUID, str]] = []

    def _event(self, event_class: type[Event], **fields: Any) -> Event:
        return self.trigger(event_class, workspace_id=self.workspace_id, **fields)

    def apply(self, event: Event) -> None:
        super().apply(event)
        self.updated_at = event.occurred_at
        self.counts[event.type.split(".", 1)[1]] += 1

    def _remember(self, entry: dict[str, Any]) -> None:
        self.recent.insert(0, entry)
        del self.recent[RECENT:]

    def take_intents(self) -> tuple[list[Start], list[tuple[UUID, str]]]:
        starts, cancels = self.starts, self.cancels
        self.starts, self.cancels = [], []
        return starts, cancels

    def pause(self, note: str | None, actor: str | None) -> None:
        self.check_alive()
        if self.status == "paused":
            raise Refused(f"{self.kind} {self.name!r} is already paused")
        self._event(self.EVENTS["paused"], actor=actor, note=note)

    def unpause(self, note: str | None, now: datetime, actor: str | None) -> None:
        self.check_alive()
        if self.status != "paused":
            raise Refused(f"{self.kind} {self.name!r} is not paused")
        self._event(self.EVENTS["unpaused"], actor=actor, note=note, **self._resume_fields(now))

    def _resume_fields(self, _now: datetime) -> dict[str, Any]:
        return {}

    def delete(self, actor: str | None) -> None:
        self.check_alive()
        self._event(self.EVENTS["deleted"], actor=actor)

    def check_alive(self) -> None:
        if self.status == "deleted":
            raise NotFound(f"no {self.kind} {self.id}")

    def _paused(self, e: Any) -> None:
        self.status, self.note = "paused", e.note

    def _unpaused(self, e: Any) -> None:
        self.status, self.note = "active", e.note

    def on_deleted(self, _e: Event) -> None:
        self.status = "deleted"

    # --- snapshots: the state the events fold to, to start from instead of the whole log ------

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": str(self.id),
            "version": self.version,
            "workspace_id": self.workspace_id,
            "name": self.name,
            "definition": self.definition,
            "status": self.status,
            "note": self.note,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "recent": self.recent,
            "counts": dict(self.counts),
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.version, self.workspace_id = data["version"], data["workspace_id"]
        self.status, self.note, self.recent = data["status"], data["note"], data["recent"]
        self.created_at, self.updated_at = _time(data["created_at"]), _time(data["updated_at"])
        self.counts = Counter(data["counts"])
        self._define(data["name"], data["definition"])

    def _define(self, name: str, definition: dict[str, Any]) -> None:
        raise NotImplementedError

    def view(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "kind": self.kind,
            "workspace_id": self.workspace_id,
            "name": self.name,
            "status": self.status,
            "note": self.note,
            "definition": self.definition,
            "recent_runs": self.recent,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "version": self.version,
        }


class Schedule(Automation):
    """Ticks in time: cron, interval or one time, in a zone, with overlap and catch-up policies."""

    kind = "schedule"
    EVENTS = {
        "paused": c.SchedulePaused,
        "unpaused": c.ScheduleUnpaused,
        "deleted": c.ScheduleDeleted,
    }

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.spec: ScheduleSpec | None = None
        self.cursor = datetime.min.replace(tzinfo=UTC)
        self.running: dict[str, datetime] = {}  # execution id -> its tick
        self.buffered: datetime | None = None
        self.runs = 0

    # --- commands ---------------------------------------------------------------------------------

    def create(
        self, workspace_id: str, spec: ScheduleSpec, now: datetime, actor: str | None
    ) -> None:
        self.workspace_id = workspace_id
        self._event(
            c.ScheduleCreated, actor=actor, name=spec.name, definition=_dump(spec), anchor=now
        )

    def update(self, spec: ScheduleSpec, now: datetime, actor: str | None) -> None:
        self.check_alive()
        self._event(
            c.ScheduleUpdated, actor=actor, name=spec.name, definition=_dump(spec), anchor=now
        )
        if self.status == "active":
            self._complete_if_done()

    def _resume_fields(self, now: datetime) -> dict[str, Any]:
        return {"resume_from": now}  # the ticks of the pause are not caught up

    def tick(self, now: datetime, grace: timedelta) -> None:
        """Handle every tick due by ``now``, as the catch-up and overlap policies say."""
        if self.status != "active" or self.spec is None:
            return
        due = self._due(now)
        window = timedelta(seconds=self.spec.catchup_window_seconds)
        old = [t for t in due if now - t > window]
        if old:
            self._missed(old, f"more than the catch-up window ({window.total_seconds():g} s) late")
        recent = [t for t in due if now - t <= window]
        late = {t for t in recent if now - (t + self._jitter(t)) > grace}
        fire = recent
        if late and self.spec.catchup == "latest":
            fire = recent[-1:]
            if recent[:-1]:
                self._missed(recent[:-1], "catchup latest: only the newest late tick runs")
        elif late and self.spec.catchup == "none":
            fire = [t for t in recent if t not in late]
            self._missed(sorted(late), "catchup none: late ticks do not run")
        for t in fire:
            self._fire(t, now, "catchup" if t in late else "tick")
        self._complete_if_done()

    def trigger_now(self, now: datetime) -> None:
        self.check_alive()
        self._fire(now, now, "manual")

    def ticks_between(self, start: datetime, end: datetime) -> list[datetime]:
        """The ticks in [start, end] (a backfill's), at most ``MAX_TICKS``."""
        self.check_alive()
        assert self.spec is not None
        if end < start:
            raise Invalid("backfill: end is before start")
        ticks = []
        for t in self.spec.ticks_after(start - timedelta(microseconds=1)):
            if t > end:
                break
            ticks.append(t)
            if len(ticks) > MAX_TICKS:
                raise Invalid(f"backfill: more than {MAX_TICKS} ticks in that range; split it")
        return ticks

    def backfill(self, ticks: list[datetime], now: datetime) -> None:
        """Start these ticks at once, outside the overlap policy (the caller left out those
        that already ran: their executions exist under the same idempotency key)."""
        for t in ticks:
            self._start(t, now, "backfill")

    def run_ended(self, execution_id: UUID, status: str, now: datetime, cause: Event) -> None:
        """An execution this schedule started ended: a buffered tick may start now."""
        if str(execution_id) not in self.running:
            return
        self._event(
            c.ScheduleRunEnded,
            causation_id=cause.event_id,
            execution_id=execution_id,
            status=status,
        )
        if not self.running and self.buffered is not None and self.status == "active":
            self._start(self.buffered, now, "buffered")

    # --- rules ------------------------------------------------------------------------------------

    def _jitter(self, t: datetime) -> timedelta:
        assert self.spec is not None
        return self.spec.jitter(str(self.id), t)

    def _due(self, now: datetime) -> list[datetime]:
        assert self.spec is not None
        ticks: list[datetime] = []
        for t in self.spec.ticks_after(self.cursor):
            if t + self._jitter(t) > now or len(ticks) >= MAX_TICKS:
                break
            ticks.append(t)
        return ticks

    def _next_tick(self) -> datetime | None:
        assert self.spec is not None
        return next(self.spec.ticks_after(self.cursor), None)

    def _fire(self, t: datetime, now: datetime, reason: str) -> None:
        assert self.spec is not None
        if self.spec.max_runs is not None and self.runs >= self.spec.max_runs:
            self._event(c.ScheduleTickSkipped, scheduled_for=t, reason="max_runs reached")
            return
        policy, running = self.spec.overlap, list(self.running)
        if running and policy == "skip":
            why = f"overlap skip: {len(running)} execution(s) of this schedule still running"
            self._event(c.ScheduleTickSkipped, scheduled_for=t, reason=why)
        elif running and policy == "buffer_one":
            if self.buffered is None:
                self._event(c.ScheduleTickBuffered, scheduled_for=t)
            else:
                why = "overlap buffer_one: a tick already waits for the running execution"
                self._event(c.ScheduleTickSkipped, scheduled_for=t, reason=why)
        else:
            if running and policy == "cancel_previous":
                why = f"cancelled by schedule {self.name!r}: a newer tick started (cancel_previous)"
                self.cancels += [(UUID(e), why) for e in running]
            self._start(t, now, reason)

    def _start(self, t: datetime, now: datetime, reason: str) -> None:
        assert self.spec is not None
        key = tick_key(self.id, t)
        execution_id = c.execution_id_for_key(self.workspace_id, key)
        zone = self.spec.zone
        scope = {
            "schedule": {
                "id": str(self.id),
                "name": self.name,
                "fired_at": now.astimezone(zone).isoformat(),
                "scheduled_for": t.astimezone(zone).isoformat(),
            }
        }
        event = self._event(
            c.ScheduleFired,
            correlation_id=execution_id,
            scheduled_for=t,
            fired_at=now,
            execution_id=execution_id,
            idempotency_key=key,
            reason=reason,
        )
        self.starts.append(
            Start(
                execution_id=execution_id,
                idempotency_key=key,
                request=self.spec.request,
                plan=self.spec.plan,
                inputs=resolve(self.spec.inputs, scope),
                source="schedule",
                schedule_id=str(self.id),
                actor=f"schedule {self.name}",
                causation_id=event.event_id,
            )
        )

    def _missed(self, ticks: list[datetime], reason: str) -> None:
        self._event(
            c.ScheduleTicksMissed, count=len(ticks), first=ticks[0], last=ticks[-1], reason=reason
        )

    def _complete_if_done(self) -> None:
        assert self.spec is not None
        if self.spec.max_runs is not None and self.runs >= self.spec.max_runs:
            self._event(c.ScheduleCompleted, reason=f"max_runs reached ({self.spec.max_runs})")
        elif self._next_tick() is None:
            done = "the one-time run is done" if self.spec.at else "no tick before end_at is left"
            self._event(c.ScheduleCompleted, reason=done)

    # --- timers -----------------------------------------------------------------------------------

    def timer(self) -> Timer | None:
        """When this schedule wants to be woken next (None: never)."""
        if self.status != "active" or self.spec is None:
            return None
        t = self._next_tick()
        if t is None:
            return None
        return Timer(timer_id(self.id), t + self._jitter(t), {"schedule_id": str(self.id)})

    def next_fire_times(self, count: int) -> list[str]:
        """The next ``count`` fire times, in the schedule's zone."""
        if self.spec is None or self.status in ("completed", "deleted"):
            return []
        zone = self.spec.zone
        return [t.astimezone(zone).isoformat() for t in self.spec.next_times(self.cursor, count)]

    # --- state from events ------------------------------------------------------------------------

    def on_created(self, e: c.ScheduleCreated) -> None:
        self.workspace_id, self.created_at, self.cursor = e.workspace_id, e.occurred_at, e.anchor
        self._define(e.name, e.definition)

    def on_updated(self, e: c.ScheduleUpdated) -> None:
        self._define(e.name, e.definition)
        self.cursor = max(self.cursor, e.anchor)
        if self.status == "completed":
            self.status = "active"  # a new definition may have ticks to come (else completes again)

    def _define(self, name: str, definition: dict[str, Any]) -> None:
        self.name, self.definition = name, definition
        self.spec = ScheduleSpec.model_validate(definition)

    def on_paused(self, e: c.SchedulePaused) -> None:
        self._paused(e)

    def on_unpaused(self, e: c.ScheduleUnpaused) -> None:
        self._unpaused(e)
        self.cursor = max(self.cursor, e.resume_from)

    def on_completed(self, e: c.ScheduleCompleted) -> None:
        self.status, self.note = "completed", e.reason

    def on_fired(self, e: c.ScheduleFired) -> None:
        if e.reason in ("tick", "catchup"):
            self.cursor = max(self.cursor, e.scheduled_for)
        if e.reason != "backfill":
            self.runs += 1
            self.running[str(e.execution_id)] = e.scheduled_for
        if e.reason == "buffered":
            self.buffered = None
        self._remember(
            {
                "scheduled_for": iso(e.scheduled_for),
                "fired_at": iso(e.fired_at),
                "outcome": "started",
                "reason": e.reason,
                "execution_id": str(e.execution_id),
                "status": "running" if e.reason != "backfill" else None,
            }
        )

    def on_tick_skipped(self, e: c.ScheduleTickSkipped) -> None:
        self.cursor = max(self.cursor, e.scheduled_for)
        self._remember(
            {"scheduled_for": iso(e.scheduled_for), "outcome": "skipped", "reason": e.reason}
        )

    def on_tick_buffered(self, e: c.ScheduleTickBuffered) -> None:
        self.cursor, self.buffered = max(self.cursor, e.scheduled_for), e.scheduled_for
        self._remember({"scheduled_for": iso(e.scheduled_for), "outcome": "buffered"})

    def on_ticks_missed(self, e: c.ScheduleTicksMissed) -> None:
        self.cursor = max(self.cursor, e.last)
        self.counts["missed_ticks"] += e.count
        self._remember(
            {
                "scheduled_for": iso(e.last),
                "first": iso(e.first),
                "count": e.count,
                "outcome": "missed",
                "reason": e.reason,
            }
        )

    def on_run_ended(self, e: c.ScheduleRunEnded) -> None:
        self.running.pop(str(e.execution_id), None)
        for entry in self.recent:
            if entry.get("execution_id") == str(e.execution_id):
                entry["status"] = e.status

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "cursor": iso(self.cursor),
            "running": {e: iso(t) for e, t in self.running.items()},
            "buffered": iso(self.buffered),
            "runs": self.runs,
        }

    def restore(self, data: dict[str, Any]) -> None:
        super().restore(data)
        self.cursor, self.buffered = _time(data["cursor"]), _time(data["buffered"])
        self.running = {e: _time(t) for e, t in data["running"].items()}  # type: ignore[misc]
        self.runs = data["runs"]

    def view(self) -> dict[str, Any]:
        return {
            **super().view(),
            "next_fire_times": self.next_fire_times(5),
            "timezone": self.spec.timezone if self.spec else None,
            "running": list(self.running),
            "buffered": iso(self.buffered),
            "runs": self.runs,
            "cursor": iso(self.cursor),
            "counts": {
                "fired": self.counts["fired"],
                "skipped": self.counts["tick_skipped"],
                "buffered": self.counts["tick_buffered"],
                "missed": self.counts["missed_ticks"],
            },
        }


def timer_id(schedule_id: UUID) -> str:
    return f"schedule:{schedule_id}"


def _dump(spec: ScheduleSpec | TriggerSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)


# --- triggers -------------------------------------------------------------------------------------


def event_context(event: Event) -> dict[str, Any]:
    """What a trigger's conditions and inputs see of an event (``${event.payload.error}``)."""
    payload = event.model_dump(mode="json", exclude=set(Event.model_fields))
    source = source_execution(event)
    return {
        "type": event.type,
        "id": str(event.event_id),
        "occurred_at": event.occurred_at.isoformat(),
        "workspace_id": event.workspace_id,
        "aggregate_id": str(event.aggregate_id),
        "execution_id": str(source) if source else None,
        "actor": event.actor,
        "payload": payload,
    }


def source_execution(event: Event) -> UUID | None:
    """The execution an event is about, if any (whose trigger chain it continues)."""
    if event.type.startswith("execution."):
        return event.aggregate_id
    found = getattr(event, "execution_id", None)
    return found if isinstance(found, UUID) else event.correlation_id


class Trigger(Automation):
    """Events in, executions out: a filter, an action, and a bound on chains of triggers."""

    kind = "trigger"
    EVENTS = {"paused": c.TriggerPaused, "unpaused": c.TriggerUnpaused, "deleted": c.TriggerDeleted}

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.spec: TriggerSpec | None = None

    def create(self, workspace_id: str, spec: TriggerSpec, actor: str | None) -> None:
        self.workspace_id = workspace_id
        self._event(c.TriggerCreated, actor=actor, name=spec.name, definition=_dump(spec))

    def update(self, spec: TriggerSpec, actor: str | None) -> None:
        self.check_alive()
        self._event(c.TriggerUpdated, actor=actor, name=spec.name, definition=_dump(spec))

    def listens_to(self, event: Event) -> bool:
        return (
            self.status == "active"
            and self.spec is not None
            and self.spec.filter.type == event.type
            and self.workspace_id == event.workspace_id
        )

    def matches(self, context: dict[str, Any]) -> bool:
        assert self.spec is not None
        f = self.spec.filter
        if f.plan is not None and _get(context, "execution.plan_name") != f.plan:
            return False
        return all(_holds(cond, context) for cond in f.where)

    def fire(self, context: dict[str, Any], chain: list[str], reason: str = "event") -> None:
        """Start the action for a matching event (``context``: ``event_context``), unless that
        would loop."""
        assert self.spec is not None
        me, event_id = str(self.id), UUID(context["id"])
        base = {"event_id_matched": event_id, "event_type": context["type"]}
        if reason == "event":
            base["causation_id"] = event_id
        if me in chain:
            why = f"trigger {self.name!r} would fire on its own output (chain: {' → '.join(chain)})"
            self._event(c.TriggerLoopStopped, **base, trigger_chain=chain, reason=why)
            return
        if len(chain) + 1 > MAX_CHAIN:
            why = f"the chain of triggers would be {len(chain) + 1} deep; at most {MAX_CHAIN}"
            self._event(c.TriggerLoopStopped, **base, trigger_chain=chain, reason=why)
            return
        scope = {"event": context, "trigger": {"id": me, "name": self.name}}
        try:
            inputs = resolve(self.spec.inputs, scope)
        except ReferenceError_ as exc:
            self._event(c.TriggerSkipped, **base, reason=f"inputs: {exc}")
            return
        key = f"trigger:{me}:{event_id}"
        execution_id = c.execution_id_for_key(self.workspace_id, key)
        fired = self._event(
            c.TriggerFired, **base, correlation_id=execution_id, execution_id=execution_id,
            idempotency_key=key, trigger_chain=[*chain, me], reason=reason,
        )  # fmt: skip
        self.starts.append(
            Start(
                execution_id=execution_id,
                idempotency_key=key,
                request=self.spec.request,
                plan=self.spec.plan,
                inputs=inputs,
                source="trigger",
                trigger_id=me,
                trigger_chain=[*chain, me],
                actor=f"trigger {self.name}",
                causation_id=fired.event_id,
            )
        )

    # --- state from events ------------------------------------------------------------------------

    def on_created(self, e: c.TriggerCreated) -> None:
        self.workspace_id, self.created_at = e.workspace_id, e.occurred_at
        self._define(e.name, e.definition)

    def on_updated(self, e: c.TriggerUpdated) -> None:
        self._define(e.name, e.definition)

    def _define(self, name: str, definition: dict[str, Any]) -> None:
        self.name, self.definition = name, definition
        self.spec = TriggerSpec.model_validate(definition)

    def on_paused(self, e: c.TriggerPaused) -> None:
        self._paused(e)

    def on_unpaused(self, e: c.TriggerUnpaused) -> None:
        self._unpaused(e)

    def on_fired(self, e: c.TriggerFired) -> None:
        self._remember(
            {
                "event_id": str(e.event_id_matched),
                "event_type": e.event_type,
                "fired_at": iso(e.occurred_at),
                "outcome": "started",
                "reason": e.reason,
                "execution_id": str(e.execution_id),
                "trigger_chain": e.trigger_chain,
            }
        )

    def on_loop_stopped(self, e: c.TriggerLoopStopped) -> None:
        self._remember(
            {
                "event_id": str(e.event_id_matched),
                "event_type": e.event_type,
                "fired_at": iso(e.occurred_at),
                "outcome": "loop_stopped",
                "reason": e.reason,
                "trigger_chain": e.trigger_chain,
            }
        )

    def on_skipped(self, e: c.TriggerSkipped) -> None:
        entry = {"event_id": str(e.event_id_matched), "event_type": e.event_type}
        self._remember(
            {**entry, "fired_at": iso(e.occurred_at), "outcome": "skipped", "reason": e.reason}
        )

    def view(self) -> dict[str, Any]:
        return {
            **super().view(),
            "counts": {
                "fired": self.counts["fired"],
                "loops_stopped": self.counts["loop_stopped"],
                "skipped": self.counts["skipped"],
            },
        }


def _get(context: dict[str, Any], path: str) -> Any:
    try:
        return lookup(context, path)
    except ReferenceError_:
        return None


def _holds(cond: Any, context: dict[str, Any]) -> bool:
    try:
        value = lookup(context, cond.clean_path)
    except ReferenceError_:
        return cond.exists is False
    if cond.exists is not None:
        return bool(cond.exists)
    if "equals" in cond.model_fields_set:
        return bool(value == cond.equals)
    return _contains(value, cond.contains)


def _contains(value: Any, part: Any) -> bool:
    if isinstance(value, str):
        return isinstance(part, str) and part in value
    if isinstance(value, list):
        return part in value
    if isinstance(value, dict) and isinstance(part, dict):
        return all(value.get(k) == v for k, v in part.items())
    return False
