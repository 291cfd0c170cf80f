"""A NATS server restart in the middle of traffic: nothing lost, nothing handled twice."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from uuid import uuid4, uuid5

import pytest
from baton_common.bus import Bus
from baton_common.consumer import Consumer, Delivery
from baton_common.embedded import NatsServer
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import Commit, PostgresEventStore
from baton_common.testing import Pinged, Ponged

pytestmark = pytest.mark.integration


async def test_nats_restart_mid_stream_loses_nothing_and_handles_each_once(
    database_url: str,
) -> None:
    data = Path(tempfile.mkdtemp())
    server = NatsServer(data).start()
    tag = uuid.uuid4().hex[:8]
    settings = Settings(NATS_URL=server.url, DATABASE_URL=database_url, BATON_DB_SCHEMA=f"chaos_{tag}",
                        BATON_SUBJECT_ROOT=f"c{tag}", BATON_STREAM=f"C_{tag.upper()}", BATON_ACK_WAIT=2.0)  # fmt: skip
    source = PostgresEventStore(database_url, "source", schema=settings.db_schema)
    sink = PostgresEventStore(database_url, "sink", schema=settings.db_schema)
    bus = await Bus.connect(settings, "chaos")
    relay = Relay(source, bus, batch=50, poll_s=0.1)

    async def answer(batch: list[Delivery]) -> Commit:
        return Commit(events=[Ponged(aggregate_id=uuid5(d.event.event_id, "a"), aggregate_version=1,
                                       n=d.event.n) for d in batch])  # type: ignore[attr-defined]  # fmt: skip

    consumer = Consumer(bus, sink, "answerer", ["*.test.pinged"], answer, batch=50)
    relay.start()
    await consumer.start()

    def knock(first: int, count: int) -> None:
        source.commit(Commit(events=[Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n)
                                     for n in range(first, first + count)]))  # fmt: skip

    knock(0, 300)
    await asyncio.sleep(0.3)
    server.stop()  # the bus goes away mid-stream
    knock(300, 300)  # committed while it is down: the relay must catch up
    await asyncio.sleep(1.0)
    server.start()  # same port, same storage
    knock(600, 300)
    relay.kick()
    deadline = time.monotonic() + 60
    while sink.max_position() < 900 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # any duplicate would show up now
    await consumer.stop()
    await relay.stop()
    answered = sorted(e.n for _, e in sink.notifications(0, 2000))  # type: ignore[attr-defined]
    assert answered == list(range(900))
    await bus.js.delete_stream(settings.stream)
    await bus.close()
    server.stop()
    source.close()
    sink.close()
