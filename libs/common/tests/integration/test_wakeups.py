"""An idle engine waits on events, not polls (issue 32): what used to be found by a poll a few
times a second is now woken, and each test here fails if only the slow safety poll finds it."""

from __future__ import annotations

import asyncio
import time
from uuid import uuid4

import pytest
from baton_common.bus import Bus
from baton_common.consumer import PULL_WAIT_S, Consumer, Delivery
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import Commit, PostgresEventStore
from baton_common.testing import Pinged, until

pytestmark = pytest.mark.integration

SLOW_POLL_S = 120.0  # longer than any test waits: what arrives in time was woken


async def _published(bus: Bus) -> int:
    return (await bus.js.stream_info(bus.settings.stream)).state.messages


async def test_a_commit_where_the_relay_does_not_lead_is_published_at_once(
    bus: Bus, settings: Settings
) -> None:
    """Two replicas of a service: the relay of the one that commits does not lead, so it
    notifies the leading one (NOTIFY), which publishes without waiting for its poll."""
    store = PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)
    leading = Relay(store, bus, poll_s=SLOW_POLL_S)
    leading.start()
    await until(lambda: leading.leading, what="the first relay to lead")
    other = Relay(store, bus, poll_s=SLOW_POLL_S)  # the replica that commits: store.on_events
    other.start()
    await asyncio.sleep(0.5)  # it tried to lead, and stands by
    assert not other.leading
    before = await _published(bus)
    started = time.monotonic()
    store.commit(Commit(events=[Pinged(aggregate_id=uuid4(), aggregate_version=1, n=1)]))
    try:
        await until(lambda: _more(bus, before), timeout=20, what="the event on the bus")
    finally:
        await other.stop()
        await leading.stop()
        store.close()
    assert time.monotonic() - started < 10  # woken, not polled


async def test_an_idle_consumer_on_a_long_pull_stops_at_once(bus: Bus, settings: Settings) -> None:
    store = PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)

    async def nothing(batch: list[Delivery]) -> Commit:
        return Commit()

    consumer = Consumer(bus, store, f"idle{uuid4().hex[:6]}", ["*.test.nothing"], nothing)
    await consumer.start()
    await asyncio.sleep(1.0)  # waiting on its pull, which lasts PULL_WAIT_S
    started = time.monotonic()
    await consumer.stop()
    store.close()
    assert time.monotonic() - started < min(5.0, PULL_WAIT_S / 2)


async def _more(bus: Bus, before: int) -> bool:
    return await _published(bus) > before
