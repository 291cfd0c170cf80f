"""A consumer the stream dropped messages for reads them from the stores (real NATS JetStream and
PostgreSQL; deleting messages stands for the stream's limits): each once, and only its subjects."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest
from baton_common import recovery
from baton_common.bus import Bus
from baton_common.consumer import Consumer, Delivery
from baton_common.events import Event
from baton_common.recovery import StoreRecovery
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import Commit, PostgresEventStore
from baton_common.testing import Pinged, Ponged, until

pytestmark = pytest.mark.integration


def pings(*numbers: int) -> list[Event]:
    return [Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n) for n in numbers]


async def published(relay: Relay, store: PostgresEventStore) -> None:
    while await relay.publish_pending():
        pass


async def test_what_the_stream_dropped_is_read_from_the_store_once(
    bus: Bus, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recovery, "SAVE_EVERY_S", 0.0)  # where it got to, saved at every batch
    source = PostgresEventStore(settings.database_url, "source", schema=settings.db_schema)
    own = PostgresEventStore(settings.database_url, "own", schema=settings.db_schema)
    relay = Relay(source, bus)
    handled: list[int] = []

    async def handler(batch: list[Delivery]) -> Commit:
        handled.extend(d.event.n for d in batch)  # type: ignore[attr-defined]
        return Commit()

    def watcher() -> Consumer:
        consumer = Consumer(bus, own, "watcher", ["*.test.pinged"], handler)
        StoreRecovery(consumer, own, settings, keep_s=3600)
        return consumer

    source.commit(Commit(events=pings(1, 2, 3)))
    await published(relay, source)
    first = watcher()
    await first.start()
    await until(lambda: _true(len(handled) == 3), what="the first three")
    await asyncio.sleep(1.5)  # idle: where it got to is saved (one save late, then as it is)
    await first.stop()
    assert own.relay_position("watcher@source") == 3

    other = Ponged(aggregate_id=uuid4(), aggregate_version=1, n=0)  # not of its subjects
    missed = pings(4, 5)
    source.commit(Commit(events=[*missed, other]))
    await published(relay, source)
    for seq in range(1, 7):  # the stream drops its oldest, with what it was never given (as
        await bus.js.delete_msg(settings.stream, seq)  # its limits do; a purge moves consumers on)
    second = watcher()
    await second.start()  # it checks at once
    await until(lambda: _true(len(handled) == 5), what="the two it missed")
    await asyncio.sleep(0.5)
    await second.stop()
    assert handled == [1, 2, 3, 4, 5]  # each once, from the store
    assert own.relay_position("watcher@source") == 6  # read past what it does not take too
    ids = [str(e.event_id) for e in missed]
    assert own.handled("watcher", ids) == set(ids)  # through its inbox, as from the stream
    await relay.stop()
    source.close()
    own.close()


async def _true(value: bool) -> bool:
    return value
