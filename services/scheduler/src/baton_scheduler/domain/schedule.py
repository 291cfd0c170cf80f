"""The Schedule aggregate: ticks in time, with overlap and catch-up policies."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.plans import resolve
from baton_common.store import Timer

from baton_scheduler.domain.base import (
    Automation,
    Invalid,
    dump_spec,
    iso,
    parse_time,
    tick_key,
)
from baton_scheduler.spec import MAX_TICKS, ScheduleSpec


class Schedule(Automation):
    """Ticks in time: cron, interval or one time, in a zone, with overlap and catch-up policies."""

    kind = "schedule"
    SPEC = ScheduleSpec
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
            c.ScheduleCreated, actor=actor, name=spec.name, definition=dump_spec(spec), anchor=now
        )

    def update(self, spec: ScheduleSpec, now: datetime, actor: str | None) -> None:
        self.check_alive()
        self._event(
            c.ScheduleUpdated, actor=actor, name=spec.name, definition=dump_spec(spec), anchor=now
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
        inputs = resolve(self.spec.inputs, scope)
        self._ask_start(execution_id, key, event, inputs=inputs, schedule_id=str(self.id))

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

    def on_unpaused(self, e: c.ScheduleUnpaused) -> None:
        super().on_unpaused(e)
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
            "running": [[e, iso(t)] for e, t in self.running.items()],  # jsonb would sort keys
            "buffered": iso(self.buffered),
            "runs": self.runs,
        }

    def restore(self, data: dict[str, Any]) -> None:
        super().restore(data)
        self.cursor, self.buffered = parse_time(data["cursor"]), parse_time(data["buffered"])
        self.running = {e: parse_time(t) for e, t in data["running"]}
        self.runs = data["runs"]

    def view(self) -> dict[str, Any]:
        return {
            **super().view(),
            "next_fire_times": self.next_fire_times(5),
            "timezone": self.spec.timezone if self.spec else None,
            "running": sorted(self.running, key=lambda e: (self.running[e], e)),
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
