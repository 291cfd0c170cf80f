"""What schedules and triggers share: errors, start intents and the ``Automation`` base."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from baton_common.aggregate import Aggregate
from baton_common.events import Event

from baton_scheduler.spec import ScheduleSpec, TriggerSpec

RECENT = 20  # ticks and firings kept for the views


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
    plan_ref: dict[str, Any] | None = None  # a saved plan by name: {name, version?}


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_time(value: str | None) -> Any:
    return datetime.fromisoformat(value) if value is not None else None


def tick_key(schedule_id: UUID, tick: datetime) -> str:
    """The idempotency key of a tick: one execution per schedule and scheduled time."""
    return f"schedule:{schedule_id}:{tick.astimezone(UTC).isoformat().replace('+00:00', 'Z')}"


class Automation(Aggregate):
    """What schedules and triggers share: a name, a definition, paused or not, recent runs."""

    kind = ""
    EVENTS: dict[str, type[Event]] = {}
    SPEC: type[ScheduleSpec] | type[TriggerSpec]  # what a definition validates as
    spec: Any = None  # a SPEC once defined (each subclass names its type)

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

    def _ask_start(self, execution_id: UUID, key: str, cause: Event, **start: Any) -> None:
        """Ask for a run of this automation's request or plan (``start``: inputs and where
        it comes from), caused by ``cause``."""
        assert self.spec is not None
        self.starts.append(
            Start(
                execution_id=execution_id,
                idempotency_key=key,
                request=self.spec.request,
                plan=self.spec.plan,
                plan_ref=self.spec.plan_ref,  # type: ignore[arg-type]  # a dict once parsed
                source=self.kind,
                actor=f"{self.kind} {self.name}",
                causation_id=cause.event_id,
                **start,
            )
        )

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

    def on_paused(self, e: Any) -> None:
        self.status, self.note = "paused", e.note

    def on_unpaused(self, e: Any) -> None:
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
        self.created_at, self.updated_at = (
            parse_time(data["created_at"]),
            parse_time(data["updated_at"]),
        )
        self.counts = Counter(data["counts"])
        self._define(data["name"], data["definition"])

    def _define(self, name: str, definition: dict[str, Any]) -> None:
        self.name, self.definition = name, definition
        self.spec = self.SPEC.model_validate(definition)

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


def dump_spec(spec: ScheduleSpec | TriggerSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", exclude_none=True)
