"""A trigger's backfill: the past events of its type, read back from the JetStream stream."""

from __future__ import annotations

import contextlib
from datetime import datetime

from baton_common.bus import Bus
from baton_common.contracts import decode
from baton_common.events import Event, EventDecodeError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import FetchTimeoutError

from baton_scheduler.spec import MAX_TICKS


async def past_events(
    bus: Bus, workspace_id: str, event_type: str, start: datetime, end: datetime
) -> list[Event]:
    """Events of ``event_type`` in the workspace that the stream holds between ``start`` and
    ``end`` (at most ``MAX_TICKS``), through a short-lived consumer of our own."""
    subject = f"{bus.settings.subject_root}.{workspace_id}.{event_type}"
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME,
        opt_start_time=start,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=30,
    )
    sub = await bus.js.pull_subscribe(subject, stream=bus.settings.stream, config=config)
    found: list[Event] = []
    try:
        while len(found) < MAX_TICKS:
            try:
                msgs = await sub.fetch(200, timeout=1)
            except (FetchTimeoutError, NatsTimeout, TimeoutError):
                break  # nothing more stored
            for msg in msgs:
                if msg.metadata.timestamp > end:
                    return found
                with contextlib.suppress(EventDecodeError):
                    found.append(decode(msg.data))
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return found
