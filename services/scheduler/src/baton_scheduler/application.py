"""The scheduler application: schedules and triggers held in memory, always as of the store.

Every replica follows its store's notification log (``refresh``): the objects in memory are
exactly what the log says, up to a position. A change is made on a copy and committed; the
store's version check refuses a copy that another replica (or another loop of this one) has
overtaken, and the log then brings the winner's events in. Nothing else updates the objects,
so there is no cache to go stale.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.contracts import registry
from baton_common.events import Event
from baton_common.startsnapshots import MemoryStartSnapshots, StartsFromSnapshot, StartSnapshots
from baton_common.store import Commit, MemoryEventStore, PostgresEventStore, Timer

from baton_scheduler.domain import (
    Automation,
    NotFound,
    Schedule,
    Start,
    Trigger,
    event_context,
    source_execution,
    timer_id,
)
from baton_scheduler.spec import TRIGGERABLE

log = logging.getLogger(__name__)

KINDS: dict[str, type[Automation]] = {"schedule": Schedule, "trigger": Trigger}
CREATED = {c.ScheduleCreated.TYPE: Schedule, c.TriggerCreated.TYPE: Trigger}
TOPICS = sorted(t for t in registry().types() if t.startswith(("schedule.", "trigger.")))
ENDED = {
    c.ExecutionSucceeded.TYPE: "succeeded",
    c.ExecutionFailed.TYPE: "failed",
    c.ExecutionCancelled.TYPE: "cancelled",
    c.PlanningFailed.TYPE: "failed",
}
SUBJECTS = [
    "*.execution.requested",
    "*.execution.started",
    "*.execution.succeeded",
    "*.execution.failed",
    "*.execution.cancelled",
    "*.plan.proposed",
    "*.plan.failed",
    "*.approval.>",
    "*.webhook.>",
    "*.calendar.>",
]
RETRY_BROKEN = timedelta(minutes=1)
# Log positions between snapshots (BATON_SNAPSHOT_EVERY): a replica starts from the newest one
# and reads at most this many events (and a minute's more) whatever the history's length.
SNAPSHOT_EVERY = 1_000
ExecutionLookup = Callable[[UUID], dict[str, Any] | None]


class ExecutionNotYetKnown(Exception):
    """A trigger needs the execution's view (its plan name) and the projections do not have
    it yet: the message is retried later."""


class SchedulerApp(StartsFromSnapshot):
    """Schedules and triggers of every workspace, as of ``position`` in the store's log."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        executions: ExecutionLookup | None = None,
        grace: timedelta = timedelta(seconds=2),
        snapshots: StartSnapshots | MemoryStartSnapshots | None = None,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> None:
        self.store = store
        self.executions = executions or (lambda _id: None)
        self.grace = grace  # a tick handled later than this after its time is late (catch-up)
        self.objects: dict[UUID, Automation] = {}
        self.position = 0
        self.totals: Counter[str] = Counter()  # events of the whole history, by type
        self.snapshots = snapshots
        self.snapshot_every = snapshot_every

    # --- snapshots (StartsFromSnapshot) ----------------------------------------------------------

    def _restore(self, data: dict[str, Any]) -> None:
        objects: dict[UUID, Automation] = {}
        for state in data["objects"]:
            obj = KINDS[state["kind"]](UUID(state["id"]))
            obj.restore(state)
            objects[obj.id] = obj
        self.objects, self.totals = objects, Counter(data["totals"])

    def _state(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "totals": dict(self.totals),
            "objects": [o.state() for o in self.objects.values()],
        }

    # --- following the log ------------------------------------------------------------------------

    def refresh(self) -> None:
        """Apply what the log holds after ``position`` (every replica's commits)."""
        recorder = self.store.recorder
        while True:
            rows = recorder.select_notifications(
                self.position, 1000, topics=TOPICS, inclusive_of_start=False
            )
            for row in rows:
                self._apply(registry().decode(row.state))
            self.read += len(rows)
            if rows:
                self.position = rows[-1].id
            if len(rows) < 1000:
                return

    def _apply(self, event: Event) -> None:
        self.totals[event.type] += 1
        obj = self.objects.get(event.aggregate_id)
        if obj is None:
            kind = CREATED.get(event.type)
            if kind is None:
                log.warning("%s for an unknown object %s: ignored", event.type, event.aggregate_id)
                return
            obj = self.objects[event.aggregate_id] = kind(event.aggregate_id)
        if event.aggregate_version == obj.version + 1:
            obj.apply(event)

    def get(self, kind: str, object_id: str, workspace_id: str) -> Automation:
        """A live object of the caller's workspace (anything else is not found)."""
        try:
            obj = self.objects.get(UUID(object_id))
        except ValueError:
            obj = None
        if (
            obj is None
            or obj.kind != kind
            or obj.workspace_id != workspace_id
            or obj.status == "deleted"
        ):
            raise NotFound(f"no {kind} {object_id}")
        return obj

    def listing(self, kind: str, workspace_id: str) -> list[Automation]:
        found = [
            o
            for o in self.objects.values()
            if o.kind == kind and o.workspace_id == workspace_id and o.status != "deleted"
        ]
        return sorted(found, key=lambda o: (o.name, str(o.id)))

    def work_copy(self, obj: Automation) -> Automation:
        """Changes are made on a copy: a commit that loses a race leaves the objects as the log
        says."""
        return copy.deepcopy(obj)

    def new(self, kind: str) -> Automation:
        return KINDS[kind](uuid4())

    # --- ticks ------------------------------------------------------------------------------------

    def fire(self, timers: list[Timer], now: datetime | None = None) -> Commit:
        """Handle due schedule timers; each fired timer is set again (or cleared) in the commit."""
        now = now or datetime.now(UTC)
        self.refresh()
        out = Outbox(self.store)
        for timer in timers:
            obj = self.objects.get(UUID(timer.payload["schedule_id"]))
            if not isinstance(obj, Schedule) or obj.status != "active":
                out.clear.append(timer.timer_id)
                continue
            work = self.work_copy(obj)
            assert isinstance(work, Schedule)
            try:
                work.tick(now, self.grace)
            except Exception:  # one broken schedule must not hold up the others' ticks
                log.exception("schedule %s: its tick failed; trying again in a minute", obj.id)
                out.timers.append(replace(timer, due_at=now + RETRY_BROKEN))
                continue
            out.add(work)
        return out.commit()

    # --- the consumer: executions that ended, events that triggers listen to ----------------------

    def interest(self) -> tuple[set[str], set[tuple[str, str]]]:
        """What the bus may bring that matters here: every event of a workspace with a schedule
        (its runs' ends), and the (workspace, type) pairs that active triggers listen to."""
        scheduled: set[str] = set()
        listened: set[tuple[str, str]] = set()
        for o in self.objects.values():
            if isinstance(o, Schedule) and o.status != "deleted":
                scheduled.add(o.workspace_id)
            elif isinstance(o, Trigger) and o.status == "active" and o.spec is not None:
                listened.add((o.workspace_id, o.spec.filter.type))
        return scheduled, listened

    def handle(self, deliveries: list[Delivery], now: datetime | None = None) -> Commit:
        now = now or datetime.now(UTC)
        self.refresh()
        touched: dict[UUID, Automation] = {}
        # which schedule started which running execution: built once a batch, not per event
        running = {
            e: o.id for o in self.objects.values() if isinstance(o, Schedule) for e in o.running
        }
        for delivery in deliveries:
            event = delivery.event
            if event.type in ENDED and str(source_execution(event)) in running:
                self._ended(event, running, touched, now)
            if event.type.startswith(TRIGGERABLE):
                self._match(event, touched)
        out = Outbox(self.store)
        for obj in touched.values():
            out.add(obj)
        return out.commit()

    def _touch(self, obj: Automation, touched: dict[UUID, Automation]) -> Automation:
        if obj.id not in touched:
            touched[obj.id] = self.work_copy(obj)
        return touched[obj.id]

    def _ended(
        self, event: Event, running: dict[str, UUID], touched: dict[UUID, Automation], now: datetime
    ) -> None:
        execution_id = source_execution(event)
        assert execution_id is not None
        work = self._touch(self.objects[running[str(execution_id)]], touched)
        assert isinstance(work, Schedule)
        work.run_ended(execution_id, ENDED[event.type], now, event)

    def _match(self, event: Event, touched: dict[UUID, Automation]) -> None:
        listening = [
            o for o in self.objects.values() if isinstance(o, Trigger) and o.listens_to(event)
        ]
        if not listening:
            return
        context = self.context_of(event, listening)
        chain: list[str] | None = None
        for trigger in listening:
            if trigger.matches(context):
                chain = self.chain_of(source_execution(event)) if chain is None else chain
                work = self._touch(trigger, touched)
                assert isinstance(work, Trigger)
                work.fire(context, chain)

    def context_of(self, event: Event, triggers: list[Trigger]) -> dict[str, Any]:
        """What the triggers' filters and inputs see; the execution's view only if needed."""
        context = event_context(event)
        if any(t.spec and t.spec.filter.needs_execution for t in triggers):
            # only these are about an execution; a webhook's correlation id is not one
            about = event.type.startswith(("execution.", "plan.", "approval."))
            context["execution"] = self._execution(source_execution(event)) if about else {}
        return context

    def _execution(self, execution_id: UUID | None) -> dict[str, Any]:
        if execution_id is None:
            return {}
        found = self.executions(execution_id)
        if found is None:
            raise ExecutionNotYetKnown(f"execution {execution_id} is not in the read model yet")
        return found

    def chain_of(self, execution_id: UUID | None) -> list[str]:
        """The triggers that led to an execution (empty unless a trigger started it)."""
        if execution_id is None:
            return []
        for event in self.store.load(execution_id):
            if isinstance(event, c.StartRequested):
                return list(event.trigger_chain)
        return []

    def already_started(self, execution_ids: Iterable[UUID]) -> set[UUID]:
        return {e for e in execution_ids if self.store.load(e)}

    # --- metrics ----------------------------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        t = self.totals
        live = Counter(o.kind for o in self.objects.values() if o.status != "deleted")
        # one ticks_missed event may cover many ticks: the schedules count them
        missed = sum(o.counts["missed_ticks"] for o in self.objects.values())
        return {
            "schedules": float(live["schedule"]),
            "triggers": float(live["trigger"]),
            "schedule_ticks_fired_total": float(t[c.ScheduleFired.TYPE]),
            "schedule_ticks_skipped_total": float(t[c.ScheduleTickSkipped.TYPE]),
            "schedule_ticks_buffered_total": float(t[c.ScheduleTickBuffered.TYPE]),
            "schedule_ticks_missed_total": float(missed),
            "trigger_fired_total": float(t[c.TriggerFired.TYPE]),
            "trigger_loops_stopped_total": float(t[c.TriggerLoopStopped.TYPE]),
        }


class Outbox:
    """Collects what changed objects want committed: their events, the start and cancel
    requests (on run records named by the execution's id) and their timers."""

    def __init__(self, store: PostgresEventStore | MemoryEventStore) -> None:
        self.store = store
        self.events: list[Event] = []
        self.timers: list[Timer] = []
        self.clear: list[str] = []
        self.run_versions: dict[UUID, int] = {}
        self.cancelled: set[UUID] = set()

    def add(self, obj: Automation) -> None:
        self.events += obj.collect()
        starts, cancels = obj.take_intents()
        for start in starts:
            self.events.append(_start_requested(obj, start))
            self.run_versions[start.execution_id] = 1
        for execution_id, reason in cancels:
            self._cancel(obj, execution_id, reason)
        if isinstance(obj, Schedule):
            timer = obj.timer()
            if timer is not None:
                self.timers.append(timer)
            else:
                self.clear.append(timer_id(obj.id))

    def _cancel(self, obj: Automation, execution_id: UUID, reason: str) -> None:
        if execution_id in self.cancelled:
            return
        version = self.run_versions.get(execution_id)
        if version is None:
            history = self.store.load(execution_id)
            if any(isinstance(e, c.CancelRequested) for e in history):
                return  # asked before, by an earlier tick
            version = len(history)
        self.cancelled.add(execution_id)
        self.run_versions[execution_id] = version + 1
        self.events.append(
            c.CancelRequested(
                aggregate_id=execution_id,
                aggregate_version=version + 1,
                workspace_id=obj.workspace_id,
                correlation_id=execution_id,
                actor=f"{obj.kind} {obj.name}",
                execution_id=execution_id,
                reason=reason,
            )
        )

    def commit(self) -> Commit:
        return Commit(events=self.events, timers_set=self.timers, timers_clear=self.clear)


def _start_requested(obj: Automation, start: Start) -> c.StartRequested:
    return c.StartRequested(
        aggregate_id=start.execution_id,
        aggregate_version=1,
        workspace_id=obj.workspace_id,
        correlation_id=start.execution_id,
        causation_id=start.causation_id,
        actor=start.actor,
        idempotency_key=start.idempotency_key,
        request=start.request,
        plan=start.plan,
        plan_ref=start.plan_ref,
        inputs=start.inputs,
        source=start.source,
        schedule_id=start.schedule_id,
        trigger_id=start.trigger_id,
        trigger_chain=start.trigger_chain,
    )
