"""A small event-sourced aggregate base: state changes only by applying events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

from baton_common.events import Event

if TYPE_CHECKING:
    from baton_common.store import Timer


class Aggregate:
    """Holds an id and a version; ``trigger`` records a new event, ``apply`` folds one in.

    Subclasses define ``on_<event_type_suffix>`` methods (``on_step_succeeded`` for
    ``execution.step_succeeded``); the same methods rebuild state from the history.
    """

    def __init__(self, aggregate_id: UUID) -> None:
        self.id = aggregate_id
        self.version = 0
        self.pending: list[Event] = []

    @classmethod
    def rebuild(cls, aggregate_id: UUID, history: list[Event]) -> Self | None:
        if not history:
            return None
        agg = cls(aggregate_id)
        for event in history:
            agg.apply(event)
        return agg

    def trigger(self, event_class: type[Event], **fields: Any) -> Event:
        event = event_class(aggregate_id=self.id, aggregate_version=self.version + 1, **fields)
        self.apply(event)
        self.pending.append(event)
        return event

    def apply(self, event: Event) -> None:
        handler = getattr(self, "on_" + event.type.split(".", 1)[1], None)
        if handler is not None:
            handler(event)
        self.version = event.aggregate_version

    def collect(self) -> list[Event]:
        """Take the events recorded since the last collect (to commit them)."""
        events, self.pending = self.pending, []
        return events

    def collect_timers(self) -> tuple[list[Timer], list[str]]:
        """Take the timers to set and the ids of those to clear, to commit with the events:
        none, unless the aggregate keeps timers."""
        return [], []
