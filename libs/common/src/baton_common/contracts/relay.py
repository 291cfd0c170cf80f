"""What a relay reports about the events it carries."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from baton_common.events import Event

__all__ = ["EventParked", "parked_notice_id"]


class EventParked(Event):
    """A stored event the bus refused for good (too large, or rejected by the server): the
    relay parked it on the dead-letter stream and went on; the execution it belongs to
    (``correlation_id``) fails with ``reason``."""

    TYPE = "relay.event_parked"
    parked_event_id: UUID
    parked_type: str
    parked_aggregate_id: UUID | None = None
    position: int
    size: int
    reason: str
    relay: str


def parked_notice_id(parked_event_id: str) -> UUID:
    """The notice's aggregate (and event) id: the same for every attempt to park one event, so
    a relay that parks it again after a crash records nothing twice."""
    return uuid5(NAMESPACE_URL, f"baton:parked:{parked_event_id}")
