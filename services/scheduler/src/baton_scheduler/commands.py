"""What the API asks of the scheduler (create, list, get, update, delete, pause, unpause,
trigger-now, backfill, events): each call answered from the objects as of the log, and what it
changes returned as one commit."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from uuid import UUID, uuid4

from baton_common import contracts as c
from baton_common.contracts import registry
from baton_common.events import Event
from baton_common.store import Commit

from baton_scheduler.application import Outbox, SchedulerApp
from baton_scheduler.domain import (
    Automation,
    Invalid,
    Schedule,
    SchedulerError,
    Trigger,
    source_execution,
    tick_key,
)
from baton_scheduler.spec import Action, ScheduleSpec, SpecInvalid, TriggerSpec, parse

Result = tuple[Commit | None, c.SchedulerReply]
SPECS: dict[str, type[Action]] = {"schedule": ScheduleSpec, "trigger": TriggerSpec}


class Commands:
    """One method per ``op``; ``run`` translates domain errors to replies."""

    def __init__(self, app: SchedulerApp) -> None:
        self.app = app
        self.ops: dict[str, Callable[[c.SchedulerCall, datetime], Result]] = {
            "create": self.create,
            "list": self.listing,
            "get": self.get,
            "update": self.update,
            "delete": self.delete,
            "pause": self.pause,
            "unpause": self.unpause,
            "trigger_now": self.trigger_now,
            "backfill": self.backfill,
            "events": self.events,
            "preview": self.preview,
        }

    def run(self, call: c.SchedulerCall, now: datetime | None = None) -> Result:
        op = self.ops.get(call.op)
        if op is None:
            return None, c.SchedulerReply(status=400, detail=f"unknown operation {call.op!r}")
        self.app.refresh()
        try:
            return op(call, now or datetime.now(UTC))
        except SpecInvalid as exc:
            return None, c.SchedulerReply(status=422, detail=str(exc))
        except SchedulerError as exc:
            return None, c.SchedulerReply(status=exc.status, detail=str(exc))

    # --- reads ------------------------------------------------------------------------------------

    def listing(self, call: c.SchedulerCall, _now: datetime) -> Result:
        items = [o.view() for o in self.app.listing(call.kind, call.workspace_id)]
        return None, c.SchedulerReply(status=200, body={"items": items})

    def get(self, call: c.SchedulerCall, _now: datetime) -> Result:
        obj = self._object(call)
        view = obj.view()
        if isinstance(obj, Schedule):
            count = int(call.body.get("next") or 5)
            view["next_fire_times"] = obj.next_fire_times(max(1, min(count, 100)))
        return None, _ok(view)

    def preview(self, call: c.SchedulerCall, now: datetime) -> Result:
        """The next fire times of a definition, checked but not stored."""
        body = dict(call.body)
        count = max(1, min(int(body.pop("count", None) or 10), 100))
        spec = parse(ScheduleSpec, {"name": "preview", **body})
        zone = spec.zone
        times = [t.astimezone(zone).isoformat() for t in spec.next_times(now, count)]
        return None, _ok({"timezone": spec.timezone, "next_fire_times": times})

    def events(self, call: c.SchedulerCall, _now: datetime) -> Result:
        """The object's history: every tick fired, skipped, buffered or missed (its replay)."""
        obj = self._object(call)
        limit = max(1, min(int(call.body.get("limit") or 200), 5000))
        # the newest ``limit`` only: a per-second schedule's history is long
        rows = self.app.store.recorder.select_events(obj.id, desc=True, limit=limit)
        history = [registry().decode(r.state) for r in reversed(rows)]
        items = [
            {"version": e.aggregate_version, **e.model_dump(mode="json", exclude={"aggregate_id"})}
            for e in history
        ]
        return None, _ok({"items": items, "of": obj.version})

    # --- changes ----------------------------------------------------------------------------------

    def create(self, call: c.SchedulerCall, now: datetime) -> Result:
        spec = parse(SPECS[call.kind], call.body)
        obj = self.app.new(call.kind)
        if isinstance(obj, Schedule):
            obj.create(call.workspace_id, spec, now, call.actor)
            obj.tick(now, self.app.grace)  # a one-time run that is due already, say
        else:
            assert isinstance(obj, Trigger)
            obj.create(call.workspace_id, spec, call.actor)
        return _commit(self.app, obj, 201)

    def update(self, call: c.SchedulerCall, now: datetime) -> Result:
        obj = self._work(call)
        merged = {**obj.definition, **call.body}
        spec = parse(SPECS[call.kind], {k: v for k, v in merged.items() if v is not None})
        if isinstance(obj, Schedule):
            obj.update(spec, now, call.actor)
        else:
            assert isinstance(obj, Trigger)
            obj.update(spec, call.actor)
        return _commit(self.app, obj)

    def delete(self, call: c.SchedulerCall, _now: datetime) -> Result:
        obj = self._work(call)
        obj.delete(call.actor)
        return _commit(self.app, obj)

    def pause(self, call: c.SchedulerCall, _now: datetime) -> Result:
        obj = self._work(call)
        obj.pause(_note(call), call.actor)
        return _commit(self.app, obj)

    def unpause(self, call: c.SchedulerCall, now: datetime) -> Result:
        obj = self._work(call)
        obj.unpause(_note(call), now, call.actor)
        return _commit(self.app, obj)

    def trigger_now(self, call: c.SchedulerCall, now: datetime) -> Result:
        """Fire once now; a schedule's overlap policy still applies. A trigger fires with the
        event ``body.event`` (a payload to test it with), outside its filter."""
        obj = self._work(call)
        if isinstance(obj, Schedule):
            obj.trigger_now(now)
        else:
            assert isinstance(obj, Trigger)
            obj.check_alive()
            obj.fire(_manual_context(obj, call, now), [], reason="manual")
        return _commit(self.app, obj, 202)

    def backfill(self, call: c.SchedulerCall, now: datetime) -> Result:
        obj = self._work(call)
        if not isinstance(obj, Schedule):
            raise Invalid("a trigger's backfill reads past events: it is answered by the service")
        assert obj.spec is not None
        start, end = (backfill_range(call.body, k, obj.spec.zone) for k in ("start", "end"))
        ticks = obj.ticks_between(start, end)
        keys = {t: c.execution_id_for_key(obj.workspace_id, _tick_key(obj, t)) for t in ticks}
        ran = self.app.already_started(keys.values())
        obj.backfill([t for t in ticks if keys[t] not in ran], now)
        commit, reply = _commit(self.app, obj, 202)
        reply.body.update(
            ticks=len(ticks),
            started=len(ticks) - len(ran),
            already_ran=len(ran),
            executions=[str(keys[t]) for t in ticks],
        )
        return commit, reply

    def backfill_trigger(self, call: c.SchedulerCall, events: list[Event], now: datetime) -> Result:
        """Fire for every past event that matches, as if it arrived now; an event the trigger
        already fired for keeps its execution (same idempotency key)."""
        self.app.refresh()
        try:
            obj = self._work(call)
            assert isinstance(obj, Trigger) and obj.spec is not None
            started = fired = 0
            for event in events:
                if not obj.listens_to(event):
                    continue
                context = self.app.context_of(event, [obj])
                if not obj.matches(context):
                    continue
                fired += 1
                key = c.execution_id_for_key(obj.workspace_id, f"trigger:{obj.id}:{event.event_id}")
                if not self.app.already_started([key]):
                    obj.fire(context, self.app.chain_of(source_execution(event)))
                    started += 1
        except SchedulerError as exc:
            return None, c.SchedulerReply(status=exc.status, detail=str(exc))
        commit, reply = _commit(self.app, obj, 202)
        reply.body.update(events=len(events), matched=fired, started=started)
        return commit, reply

    # --- helpers ----------------------------------------------------------------------------------

    def _object(self, call: c.SchedulerCall) -> Automation:
        return self.app.get(call.kind, str(call.id), call.workspace_id)

    def _work(self, call: c.SchedulerCall) -> Automation:
        return self.app.work_copy(self._object(call))


def _commit(app: SchedulerApp, obj: Automation, status: int = 200) -> Result:
    out = Outbox(app.store)
    out.add(obj)
    return out.commit(), _ok(obj.view(), status)


def _ok(body: dict[str, Any], status: int = 200) -> c.SchedulerReply:
    return c.SchedulerReply(status=status, body=body)


def _note(call: c.SchedulerCall) -> str | None:
    note = call.body.get("note")
    return str(note)[:2000] if note is not None else None


def _tick_key(obj: Schedule, t: datetime) -> str:
    return tick_key(obj.id, t)


def backfill_range(body: dict[str, Any], key: str, zone: tzinfo) -> datetime:
    raw = body.get(key)
    try:
        value = datetime.fromisoformat(str(raw))
    except ValueError:
        raise Invalid(f"backfill: {key} must be an ISO-8601 time, got {raw!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)  # a wall time in the schedule's zone
    return value.astimezone(UTC)


def _manual_context(obj: Trigger, call: c.SchedulerCall, now: datetime) -> dict[str, Any]:
    assert obj.spec is not None
    payload = call.body.get("payload") or {}
    if not isinstance(payload, dict):
        raise Invalid("trigger-now: 'payload' is an object (the event's fields)")
    return {
        "type": obj.spec.filter.type,
        "id": str(uuid4()),
        "occurred_at": now.isoformat(),
        "workspace_id": obj.workspace_id,
        "aggregate_id": str(UUID(int=0)),
        "execution_id": None,
        "actor": call.actor,
        "payload": payload,
    }
