"""A stored event the bus refuses never stalls the relay: it is parked, noted, and passed; an
event too large to store never stalls a consumer either.

A real nats-server with a small ``max_payload`` (64 KiB) and real PostgreSQL: an event of 100 KiB
is under the store's check (BATON_MAX_EVENT_BYTES) but over what this server takes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.bus import Bus, dead_letters
from baton_common.consumer import Consumer, Delivery
from baton_common.contracts import registry
from baton_common.embedded import NatsServer
from baton_common.events import Event
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import MAX_EVENT_BYTES, Commit, PostgresEventStore
from nats.errors import MaxPayloadError

pytestmark = pytest.mark.integration
SMALL_BUS = 64 * 1024


class Bulky(Event):
    """Test-only event: as large as its blob."""

    TYPE = "test.bulky"
    blob: str = ""


@pytest.fixture
def small_nats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NatsServer]:
    monkeypatch.setenv("BATON_NATS_MAX_PAYLOAD", str(SMALL_BUS))
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


@pytest.fixture
async def small_bus(small_nats: NatsServer, settings: Settings) -> AsyncIterator[Bus]:
    bus = await Bus.connect(settings.model_copy(update={"nats_url": small_nats.url}), "test")
    yield bus
    await bus.close()


def _events() -> tuple[list[Event], Event]:
    execution = uuid4()
    before = [Bulky(aggregate_id=uuid4(), aggregate_version=1, blob="a") for _ in range(3)]
    big = Bulky(
        aggregate_id=uuid4(),
        aggregate_version=1,
        workspace_id="acme",
        correlation_id=execution,
        blob="x" * (100 * 1024),
    )
    after = [Bulky(aggregate_id=uuid4(), aggregate_version=1, blob="b") for _ in range(3)]
    return [*before, big, *after], big


async def _stream(bus: Bus) -> list[Event]:
    info = await bus.js.stream_info(bus.settings.stream)
    sub = await bus.js.subscribe(f"{bus.settings.subject_root}.>", ordered_consumer=True)
    out: list[Event] = []
    try:
        while len(out) < info.state.messages:
            out.append(registry().decode((await sub.next_msg(timeout=2)).data))
    finally:
        await sub.unsubscribe()
    return out


async def _published(bus: Bus, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (await bus.js.stream_info(bus.settings.stream)).state.messages < count:
        assert time.monotonic() < deadline, "the relay did not move past the refused event"
        await asyncio.sleep(0.05)


async def test_an_event_the_bus_refuses_is_parked_and_the_relay_goes_on(
    small_bus: Bus, settings: Settings
) -> None:
    assert small_bus.nc.max_payload == SMALL_BUS  # read back from the server's INFO
    store = PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)
    events, big = _events()
    store.commit(Commit(events=events))
    relay = Relay(store, small_bus)
    relay.start()
    try:
        await _published(small_bus, len(events))  # 6 small ones and the notice
    finally:
        await relay.stop()

    published = await _stream(small_bus)
    assert [e.event_id for e in published[:6]] == [e.event_id for e in events if e is not big]
    notice = published[6]
    assert isinstance(notice, c.EventParked)
    assert notice.parked_event_id == big.event_id and notice.parked_type == "test.bulky"
    assert notice.correlation_id == big.correlation_id and notice.workspace_id == "acme"
    assert "larger than the bus accepts (64 KiB" in notice.reason
    assert notice.position == 4 and notice.size > 100 * 1024

    parked = await dead_letters(small_bus)
    assert len(parked) == 1
    headers = parked[0].headers or {}
    assert headers["Baton-Consumer"] == "relay" and headers["Baton-Position"] == "4"
    assert headers["Baton-Original-Msg-Id"] == str(big.event_id)
    assert headers["Baton-Reason"] == notice.reason
    assert relay.parked == 1 and store.relay_position(relay.name) == 8  # past the notice too
    store.close()


async def test_a_relay_that_parks_the_same_event_again_records_nothing_twice(
    small_bus: Bus, settings: Settings
) -> None:
    store = PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)
    events, _ = _events()
    store.commit(Commit(events=events))
    first = Relay(store, small_bus)
    while await first.publish_pending():
        pass
    assert first.parked == 1  # the position was never saved: as if it crashed now
    second = Relay(store, small_bus)
    while await second.publish_pending():
        pass
    assert second.parked == 1  # parked again: the dead letter and the notice are the same ones
    assert len(await dead_letters(small_bus)) == 1
    notices = [e for e in await _stream(small_bus) if isinstance(e, c.EventParked)]
    assert len(notices) == 1
    assert store.max_position() == len(events) + 1  # one notice in the store
    store.close()


async def test_a_handler_whose_commit_would_be_too_large_parks_its_message_at_once(
    bus: Bus, settings: Settings
) -> None:
    """A consumer whose handler decides an event over BATON_MAX_EVENT_BYTES: the store refuses
    the commit, and the message is parked with that reason on its first delivery (a retry
    would decide the same), while the next message is handled."""
    store = PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)

    async def inflate(batch: list[Delivery]) -> Commit:
        size = MAX_EVENT_BYTES if batch[0].event.blob == "inflate" else 10  # type: ignore[attr-defined]
        return Commit(events=[Bulky(aggregate_id=uuid4(), aggregate_version=1, blob="x" * size)])

    consumer = Consumer(bus, store, "inflating", ["*.test.bulky"], inflate, batch=1)
    await bus.publish([Bulky(aggregate_id=uuid4(), blob="inflate")])
    await bus.publish([Bulky(aggregate_id=uuid4(), blob="fine")])
    await consumer.start()
    deadline = time.monotonic() + 20
    while consumer.stats.commits < 1 or consumer.stats.parked < 1:
        assert time.monotonic() < deadline, "the consumer did not park and go on"
        await asyncio.sleep(0.05)
    await consumer.stop()
    parked = await dead_letters(bus, "inflating")
    assert len(parked) == 1 and parked[0].headers["Baton-Deliveries"] == "1"
    assert parked[0].headers["Baton-Reason"].startswith("EventTooLarge: test.bulky of ")
    assert consumer.stats.nacked == 0
    store.close()


async def test_a_server_that_takes_less_than_an_event_may_be_is_reported_at_connect(
    small_nats: NatsServer, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="baton_common.bus"):
        bus = await Bus.connect(settings.model_copy(update={"nats_url": small_nats.url}), "t")
    await bus.close()
    warned = [r.getMessage() for r in caplog.records if "max_payload" in r.getMessage()]
    assert len(warned) == 1
    assert "accepts messages up to 64 KiB" in warned[0] and "up to 1000 KiB are" in warned[0]


async def test_an_event_over_the_stream_s_message_limit_is_parked_too(
    bus: Bus, settings: Settings
) -> None:
    """The server takes the message but the stream refuses its size (JetStream 10054): set
    after this bus read the stream's limit, so only the server's answer tells."""
    info = await bus.js.stream_info(settings.stream)
    info.config.max_msg_size = 32 * 1024
    await bus.js.update_stream(info.config)
    assert bus.max_msg_size is None
    store = PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)
    big = Bulky(
        aggregate_id=uuid4(), aggregate_version=1, correlation_id=uuid4(), blob="x" * 40_000
    )
    after = Bulky(aggregate_id=uuid4(), aggregate_version=1, blob="small")
    store.commit(Commit(events=[big, after]))
    relay = Relay(store, bus)
    while await relay.publish_pending():
        pass
    published = await _stream(bus)
    assert [type(e) for e in published] == [Bulky, c.EventParked]
    assert published[0].event_id == after.event_id
    reason = published[1].reason  # type: ignore[attr-defined]
    assert "refused by the bus (message size exceeds maximum allowed)" in reason
    assert relay.parked == 1
    await bus.declare()  # a bus that starts now knows the stream's limit, and checks it first
    assert bus.max_msg_size == 32 * 1024
    with pytest.raises(MaxPayloadError):
        await bus.publish_raw([big.to_json()])
    store.close()
