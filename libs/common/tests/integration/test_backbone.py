"""The exactly-once path against real NATS JetStream and real PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from uuid import uuid4, uuid5

import pytest
from baton_common.aggregate import Aggregate
from baton_common.bus import Bus, dead_letters, replay_dead_letter
from baton_common.consumer import Consumer, Delivery
from baton_common.events import Event
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import Commit, PostgresEventStore
from baton_common.testing import Pinged, Ponged, service_env, until
from opentelemetry import trace

pytestmark = pytest.mark.integration


class Counter(Aggregate):
    def on_pinged(self, _event: Event) -> None:
        pass


def _store(settings: Settings, name: str = "svc") -> PostgresEventStore:
    return PostgresEventStore(settings.database_url, name, schema=settings.db_schema)


async def _stream_messages(bus: Bus, subject: str = ">") -> list:
    info = await bus.js.stream_info(bus.settings.stream)
    sub = await bus.js.subscribe(f"{bus.settings.subject_root}.{subject}", ordered_consumer=True)
    out = []
    try:
        while len(out) < info.state.messages:
            out.append(await sub.next_msg(timeout=2))
    except TimeoutError:
        pass
    await sub.unsubscribe()
    return out


def _pongs(handled: list[Delivery]) -> Commit:
    return Commit(
        events=[
            Ponged(
                aggregate_id=uuid5(d.event.event_id, "pong"),
                aggregate_version=1,
                n=d.event.n,  # type: ignore[attr-defined]
                **{k: v for k, v in d.event.caused().items() if k != "workspace_id"},
            )
            for d in handled
        ]
    )


async def test_saved_aggregate_arrives_once_in_order_with_envelope_and_trace(
    bus: Bus, settings: Settings
) -> None:
    store = _store(settings)
    counter = Counter(uuid4())
    trace_id = int(uuid4().hex, 16)
    traceparent = f"00-{trace_id:032x}-{uuid4().hex[:16]}-01"
    for n in range(5):
        counter.trigger(Pinged, n=n, traceparent=traceparent, workspace_id="acme")
    saved = counter.collect()
    store.commit(Commit(events=saved))

    received: list[Delivery] = []

    async def handler(batch: list[Delivery]) -> Commit:
        received.extend(batch)
        return Commit()

    relay = Relay(store, bus)
    consumer = Consumer(bus, store, "watcher", ["*.test.pinged"], handler)
    relay.start()
    await consumer.start()
    await until(lambda: _ready(len(received) >= 5), what="5 deliveries")
    await asyncio.sleep(0.5)  # room for any duplicate to show up
    await consumer.stop()
    await relay.stop()

    assert [d.event for d in received] == saved  # exactly once, in order, envelope intact
    assert received[0].msg.subject == f"{settings.subject_root}.acme.test.pinged"
    assert received[0].msg.headers["traceparent"] == traceparent
    restored = trace.get_current_span(received[0].context).get_span_context()
    assert restored.trace_id == trace_id
    store.close()


async def _ready(value: bool) -> bool:
    return value


async def test_relay_crash_after_publish_before_position_republishes_nothing_twice(
    bus: Bus, settings: Settings
) -> None:
    store = _store(settings)
    events = [Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n) for n in range(300)]
    store.commit(Commit(events=events))
    first = Relay(store, bus, batch=100)
    assert await first.publish_pending() == 100
    assert store.relay_position(first.name) == 0  # published, position not saved yet: "crash" now
    second = Relay(store, bus, batch=100)
    while await second.publish_pending():
        pass
    await second.stop()  # a clean stop saves the position
    msgs = await _stream_messages(bus)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [str(e.event_id) for e in events]
    assert second.published == 300  # the first 100 went out twice; the server kept one copy
    assert store.relay_position(second.name) == 300
    store.close()


RELAY_SCRIPT = """
import asyncio, sys
from baton_common.bus import Bus
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import PostgresEventStore

async def main():
    settings = Settings()
    store = PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)
    bus = await Bus.connect(settings, "relay")
    relay = Relay(store, bus, batch=50)
    relay.start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


def _spawn_relay(settings: Settings) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", RELAY_SCRIPT], env=service_env(settings))


async def test_relay_killed_mid_stream_then_restarted_publishes_every_event_once(
    bus: Bus, settings: Settings
) -> None:
    store = _store(settings)
    events = [Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n) for n in range(5000)]
    for i in range(0, len(events), 500):
        store.commit(Commit(events=events[i : i + 500]))

    async def published() -> int:
        return (await bus.js.stream_info(settings.stream)).state.messages

    proc = _spawn_relay(settings)
    try:
        await until(lambda: _ready_count(published, 1), timeout=30, what="first publish")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert await published() < len(events), "the relay finished before it could be killed"
    finally:
        proc.kill()
    proc = _spawn_relay(settings)
    try:
        await until(lambda: _ready_count(published, len(events)), timeout=60, what="all events")
        await asyncio.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    msgs = await _stream_messages(bus)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [str(e.event_id) for e in events]
    store.close()


async def _ready_count(count, at_least: int) -> bool:
    return await count() >= at_least


@pytest.mark.parametrize("precheck", [True, False], ids=["inbox-read-first", "optimistic"])
async def test_redelivery_after_commit_before_ack_is_skipped(
    bus: Bus, settings: Settings, monkeypatch: pytest.MonkeyPatch, precheck: bool
) -> None:
    store = _store(settings)
    pings = [Pinged(aggregate_id=uuid4(), n=n) for n in range(20)]
    await bus.publish(pings)

    from nats.aio.msg import Msg

    real_ack = Msg.ack

    async def lost_ack(self: Msg) -> None:  # the process "dies" between commit and ack
        return None

    monkeypatch.setattr(Msg, "ack", lost_ack)
    first = Consumer(bus, store, "ponger", ["*.test.pinged"], _wrap(_pongs))
    await first.start()
    await until(
        lambda: _ready(first.stats.commits >= 1 and first.stats.messages >= 20), what="first pass"
    )
    await first.stop()
    monkeypatch.setattr(Msg, "ack", real_ack)

    second = Consumer(bus, store, "ponger", ["*.test.pinged"], _wrap(_pongs), precheck=precheck)
    await second.start()
    await until(lambda: _ready(second.stats.skipped >= 20), timeout=30, what="redelivery")
    await second.stop()

    pongs = [e for _, e in store.notifications(0, 1000)]
    assert sorted(e.n for e in pongs) == list(range(20))  # each effect exactly once
    assert second.stats.commits == 0
    store.close()


def _wrap(fn):
    async def handler(batch: list[Delivery]) -> Commit:
        return fn(batch)

    return handler


async def test_a_message_taken_directly_and_its_stream_copy_are_handled_once(
    bus: Bus, settings: Settings
) -> None:
    store = _store(settings)
    consumer = Consumer(bus, store, "direct", ["*.test.pinged"], _wrap(_pongs), precheck=False)
    await consumer.start()
    await consumer.listen_direct(bus.direct_subject("direct"))
    pings = [Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n) for n in range(30)]
    raw = [p.to_json() for p in pings]
    # a third of them directly first, a third on the stream first, a third directly only
    await bus.publish_direct("direct", raw[:10])
    await bus.publish(pings[10:20])
    await until(lambda: _ready(consumer.stats.messages >= 10), what="the stream copies first")
    await bus.publish_direct("direct", raw[10:30])
    await bus.publish(pings[:10])
    await until(lambda: _ready(store.max_position() >= 30), what="30 pongs")
    await until(lambda: _ready(consumer.stats.skipped >= 20), what="the second copies skipped")
    await consumer.stop()
    pongs = [e for _, e in store.notifications(0, 1000)]
    assert sorted(e.n for e in pongs) == list(range(30))  # each effect exactly once
    # the direct-only third was never on the stream: the store has it all the same
    info = await bus.js.stream_info(settings.stream)
    assert info.state.messages == 20
    store.close()


async def test_unsigned_direct_events_of_the_named_type_are_taken_in_batches_once(
    bus: Bus, settings: Settings
) -> None:
    """The workers' results path: each event goes directly (unsigned, the same bytes) and on
    the stream; only the named type is taken from the direct subject; what arrives while a
    batch commits goes in the next commit; every stream copy is skipped."""
    store = _store(settings)
    consumer = Consumer(bus, store, "results", ["*.test.pinged"], _wrap(_pongs), precheck=False)
    await consumer.start()
    subject = bus.direct_subject("results")
    await consumer.listen_direct(subject, types=frozenset({Pinged.TYPE}), signed=False)
    stray = Ponged(aggregate_id=uuid4(), aggregate_version=1, n=99)
    await bus.nc.publish(subject, stray.to_json())  # not a type this subject carries
    pings = [Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n) for n in range(30)]
    await bus.publish(pings, direct="results")
    await until(lambda: _ready(store.max_position() >= 30), what="30 pongs")
    await until(lambda: _ready(consumer.stats.skipped >= 30), what="the stream copies skipped")
    await consumer.stop()
    pongs = [e for _, e in store.notifications(0, 1000)]
    assert sorted(e.n for e in pongs) == list(range(30))  # each effect once, the stray none
    assert consumer.stats.commits < 30  # results that arrived together, committed together
    store.close()


async def test_a_burst_of_direct_messages_is_handled_in_bounded_batches_once(
    bus: Bus, settings: Settings
) -> None:
    """100 events directly (and on the stream) while a batch is being handled: no batch of
    more than ``batch`` (the executor's 20,000 plans at once were one batch of 20,000), what
    does not fit is left to the stream copies, and each is handled once."""
    store = _store(settings)
    sizes: list[int] = []
    hold = asyncio.Event()

    async def handler(batch: list[Delivery]) -> Commit:
        sizes.append(len(batch))
        await hold.wait()
        return _pongs(batch)

    consumer = Consumer(bus, store, "bursts", ["*.test.pinged"], handler, batch=10, precheck=False)
    await consumer.start()
    await consumer.listen_direct(bus.direct_subject("bursts"), signed=False)
    pings = [Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n) for n in range(101)]
    await bus.publish(pings[:1], direct="bursts")
    await until(lambda: _ready(bool(sizes)), what="the first batch in hand")
    await bus.publish(pings[1:], direct="bursts")
    await until(lambda: _ready(consumer.stats.direct_left > 0), what="a direct message left")
    hold.set()
    await until(lambda: _ready(store.max_position() >= 101), what="101 pongs")
    await consumer.stop()
    pongs = [e for _, e in store.notifications(0, 1000)]
    assert sorted(e.n for e in pongs) == list(range(101))  # each effect once
    assert max(sizes) <= 10
    store.close()


async def test_a_consumer_that_needs_order_gets_it_back_after_a_crash(
    bus: Bus, settings: Settings
) -> None:
    """JetStream gives back what a dead process held only after ack_wait, newer messages at
    once; an ``in_order`` consumer starts again from its ack floor instead."""
    store = _store(settings)
    await bus.publish([Pinged(aggregate_id=uuid4(), n=n) for n in range(5)])
    held = asyncio.Event()

    async def dies_holding(batch: list[Delivery]) -> Commit:
        held.set()
        await asyncio.Event().wait()  # the process dies here, nothing committed or acked
        return Commit()

    first = Consumer(bus, store, "viewer", ["*.test.pinged"], dies_holding)
    await first.start()
    await asyncio.wait_for(held.wait(), 10)
    assert first._task is not None
    first._task.cancel()
    await first.sub.unsubscribe()
    await bus.publish([Pinged(aggregate_id=uuid4(), n=n) for n in range(5, 10)])

    seen: list[int] = []

    async def record(batch: list[Delivery]) -> Commit:
        seen.extend(d.event.n for d in batch)  # type: ignore[attr-defined]
        return Commit()

    second = Consumer(bus, store, "viewer", ["*.test.pinged"], record, in_order=True)
    await second.start()
    await until(lambda: _ready(len(seen) >= 10), timeout=10, what="all ten")
    await second.stop()
    assert seen == list(range(10))  # in the stream's order, well before ack_wait (30 s)
    store.close()


async def test_ten_thousand_messages_take_far_fewer_commits(bus: Bus, settings: Settings) -> None:
    store = _store(settings)
    total = 10_000
    for i in range(0, total, 1000):
        await bus.publish([Pinged(aggregate_id=uuid4(), n=n) for n in range(i, i + 1000)])
    consumer = Consumer(bus, store, "bulk", ["*.test.pinged"], _wrap(_pongs), batch=500)
    started = time.perf_counter()
    await consumer.start()
    await until(lambda: _ready(consumer.stats.messages >= total), timeout=120, what="10k messages")
    elapsed = time.perf_counter() - started
    await consumer.stop()
    assert store.max_position() == total
    assert consumer.stats.commits <= total / 50
    print(
        f"\n[bench] consumer: {total} messages, {consumer.stats.commits} commits, "
        f"{total / elapsed:,.0f} events/s (handled + stored + acked)"
    )
    store.close()


async def test_malformed_message_is_parked_with_reason_and_the_consumer_goes_on(
    bus: Bus, settings: Settings
) -> None:
    store = _store(settings)
    root = settings.subject_root
    await bus.js.publish(
        f"{root}.default.test.pinged", b"{not json", headers={"Nats-Msg-Id": "bad-1"}
    )
    await bus.js.publish(f"{root}.default.test.pinged", b'{"type": "test.pinged", "n": "x"}')
    good = Pinged(aggregate_id=uuid4(), n=7)
    await bus.publish([good])
    consumer = Consumer(bus, store, "careful", ["*.test.pinged"], _wrap(_pongs))
    await consumer.start()
    await until(lambda: _ready(consumer.stats.commits >= 1), what="the good message")
    await consumer.stop()

    parked = await dead_letters(bus, "careful")
    reasons = [m.headers["Baton-Reason"] for m in parked]
    assert len(parked) == 2
    assert reasons[0].startswith("not JSON")
    assert "invalid test.pinged" in reasons[1] and "aggregate_id" in reasons[1]
    assert parked[0].headers["Baton-Original-Subject"] == f"{root}.default.test.pinged"
    assert [e.n for _, e in store.notifications(0, 10)] == [7]
    store.close()


async def test_transient_failure_is_retried_and_poison_message_is_parked(
    bus: Bus, settings: Settings
) -> None:
    store = _store(settings)
    flaky, poison, fine = (Pinged(aggregate_id=uuid4(), n=n) for n in (1, 2, 3))
    failures = {flaky.event_id: 1, poison.event_id: 10**6}

    async def handler(batch: list[Delivery]) -> Commit:
        for d in batch:
            if failures.get(d.event.event_id, 0) > 0:
                failures[d.event.event_id] -= 1
                raise RuntimeError(f"downstream hiccup for {d.event.n}")
        return _pongs(batch)

    await bus.publish([flaky, poison, fine])
    consumer = Consumer(bus, store, "retrying", ["*.test.pinged"], handler, max_deliveries=3)
    await consumer.start()
    await until(
        lambda: _ready(consumer.stats.parked >= 1 and store.max_position() >= 2),
        timeout=30,
        what="retries",
    )
    await consumer.stop()
    assert sorted(e.n for _, e in store.notifications(0, 10)) == [1, 3]
    parked = await dead_letters(bus, "retrying")
    assert len(parked) == 1 and "downstream hiccup for 2" in parked[0].headers["Baton-Reason"]

    failures[poison.event_id] = 0  # the cause is fixed: replay the parked message
    await replay_dead_letter(bus, parked[0])
    again = Consumer(bus, store, "retrying", ["*.test.pinged"], handler)
    await again.start()
    await until(lambda: _ready(store.max_position() >= 3), what="replayed message")
    await again.stop()
    assert sorted(e.n for _, e in store.notifications(0, 10)) == [1, 2, 3]
    store.close()


async def test_a_step_the_executor_runs_itself_never_reaches_the_task_takers(
    bus: Bus, settings: Settings
) -> None:
    from baton_common import contracts as c

    def dispatch(step: str, inline: bool) -> c.StepDispatched:
        return c.StepDispatched(
            aggregate_id=uuid4(), aggregate_version=1, workspace_id="acme", step_id=step,
            attempt=1, tool="mock.agent", input={}, idempotency_key=step, timeout_s=5,
            inline=inline,
        )  # fmt: skip

    store = _store(settings)
    takers: list[Delivery] = []
    everything: list[Delivery] = []

    async def take(batch: list[Delivery]) -> Commit:
        takers.extend(batch)
        return Commit()

    async def watch(batch: list[Delivery]) -> Commit:
        everything.extend(batch)
        return Commit()

    relay = Relay(store, bus)
    worker = Consumer(bus, store, "taker", ["*.execution.step_dispatched"], take)
    watcher = Consumer(bus, store, "watcher", ["*.execution.>"], watch)
    for consumer in (worker, watcher):
        await consumer.start()
    relay.start()
    store.commit(Commit(events=[dispatch("stored-inline", True), dispatch("stored-task", False)]))
    await bus.publish(
        [dispatch("sent-inline", True), dispatch("sent-task", False)]
    )  # the other path
    await until(lambda: _ready(len(everything) >= 4), what="4 dispatches watched")
    await asyncio.sleep(0.5)  # room for a wrong delivery to show up
    for consumer in (worker, watcher):
        await consumer.stop()
    await relay.stop()
    assert sorted(d.event.step_id for d in takers) == ["sent-task", "stored-task"]  # type: ignore[attr-defined]
    assert {d.msg.subject.rsplit(".", 1)[-1] for d in everything} == {"inline", "step_dispatched"}
    store.close()


async def test_messages_a_handler_does_not_want_are_acked_undecoded(
    bus: Bus, settings: Settings
) -> None:
    store = _store(settings)
    handled: list[Delivery] = []

    async def handler(batch: list[Delivery]) -> Commit:
        handled.extend(batch)
        return Commit()

    async def wanted(msgs) -> set[int]:  # the even pings, told from the subject's workspace
        return {i for i, m in enumerate(msgs) if bus.workspace_of(m.subject) == "even"}

    consumer = Consumer(
        bus, store, "picky", ["*.test.pinged"], handler, record_empty=False, wanted=wanted
    )
    await consumer.start()
    pings = [
        Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n, workspace_id=("odd", "even")[n % 2 == 0])
        for n in range(20)
    ]  # fmt: skip
    # one that could not even be decoded: not wanted, so never parked either
    await bus.nc.publish(f"{settings.subject_root}.odd.test.pinged", b"not json")
    await bus.publish(pings)
    await until(lambda: _ready(consumer.stats.skipped >= 11), what="the odd ones acked")
    await until(lambda: _ready(len(handled) >= 10), what="the even ones handled")
    await consumer.stop()
    assert sorted(d.event.n for d in handled) == list(range(0, 20, 2))  # type: ignore[attr-defined]
    info = await bus.js.consumer_info(settings.stream, "picky")
    assert info.num_ack_pending == 0 and info.num_pending == 0  # nothing comes back
    assert await dead_letters(bus) == []
    store.close()


async def test_the_puller_hands_out_the_stream_in_order_in_bounded_batches(
    bus: Bus, settings: Settings
) -> None:
    from baton_common.consumer import Puller
    from nats.errors import TimeoutError as NatsTimeoutError
    from nats.js import api

    stream = settings.stream
    config = api.ConsumerConfig(durable_name="puller", ack_policy=api.AckPolicy.EXPLICIT,
                                filter_subject=f"{settings.subject_root}.*.test.pinged")  # fmt: skip
    await bus.js.add_consumer(stream, config=config)
    puller = Puller(await bus.js.pull_subscribe_bind(durable="puller", stream=stream))
    await bus.publish([Pinged(aggregate_id=uuid4(), aggregate_version=1, n=n) for n in range(250)])
    seen: list[bytes] = []
    while len(seen) < 250:
        batch = await puller.fetch(100, timeout=2)
        assert 1 <= len(batch) <= 100
        for msg in batch:
            seen.append(msg.data)
            await msg.ack()
    assert [Pinged.model_validate_json(d).n for d in seen] == list(range(250))  # once, in order
    with pytest.raises(NatsTimeoutError):  # nothing left: it says so after its timeout
        await puller.fetch(100, timeout=0.3)
    later = asyncio.create_task(puller.fetch(100, timeout=5))
    await asyncio.sleep(0.1)  # waiting for the next one to come
    await bus.publish([Pinged(aggregate_id=uuid4(), aggregate_version=1, n=250)])
    (msg,) = await asyncio.wait_for(later, 5)
    assert Pinged.model_validate_json(msg.data).n == 250
    await msg.ack()

    async def all_acked() -> bool:  # the server takes acks in on its own time
        info = await bus.js.consumer_info(stream, "puller")
        return info.num_ack_pending == 0 and info.num_pending == 0

    await until(all_acked, what="every message acked")
    assert (await bus.js.consumer_info(stream, "puller")).num_waiting <= 1  # one pull at most


async def test_the_puller_falls_back_to_the_library_fetch_without_its_internals() -> None:
    from baton_common.consumer import Puller

    class Library:  # a subscription from a nats-py that keeps its queue elsewhere
        async def fetch(self, batch: int, timeout: float) -> list[str]:
            return [f"{batch}:{timeout}"]

    assert await Puller(Library()).fetch(7, timeout=0.5) == ["7:0.5"]
