"""Two replicas of one service, one store: the replica that does not follow the log publishes
what it commits itself, at once; each aggregate's events still reach the stream in order, once."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import pytest
from baton_common.bus import Bus
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import Commit, PostgresEventStore
from baton_common.testing import Pinged, until

pytestmark = pytest.mark.integration


def _store(settings: Settings) -> PostgresEventStore:
    return PostgresEventStore(settings.database_url, "svc", schema=settings.db_schema)


async def _commit(relay: Relay, aggregate: UUID, version: int) -> Pinged:
    event = Pinged(aggregate_id=aggregate, aggregate_version=version, n=version)
    relay.committed(relay.store.commit(Commit(events=[event])))
    return event


async def _on_stream(bus: Bus) -> list[str]:
    info = await bus.js.stream_info(bus.settings.stream)
    sub = await bus.js.subscribe(f"{bus.settings.subject_root}.>", ordered_consumer=True)
    ids = [
        (await sub.next_msg(timeout=2)).headers["Nats-Msg-Id"] for _ in range(info.state.messages)
    ]
    await sub.unsubscribe()
    return ids


async def test_a_replica_publishes_its_own_commits_and_each_aggregate_stays_in_order(
    bus: Bus, settings: Settings
) -> None:
    # The leader polls its log only every 30 s: what arrives sooner was published by the
    # other replica itself, or by the leader woken by it.
    leader = Relay(_store(settings), bus, poll_s=30)
    leader.start()
    await until(lambda: leader.leading, what="the first relay leads")
    other = Relay(_store(settings), bus, poll_s=30)
    other.start()
    await asyncio.sleep(0.1)
    assert not other.leading
    x, y = uuid4(), uuid4()
    steps = [
        (other, x, 1),  # the other's own, first of its aggregate: published by it
        (other, y, 1),
        (other, y, 2),  # follows its own: published by it
        (leader, x, 2),  # follows the other's: the leader reads its log
        (other, x, 3),  # follows the leader's: left to the leader, which it wakes
    ]
    sent = []
    for n, (relay, aggregate, version) in enumerate(steps, 1):
        sent.append(await _commit(relay, aggregate, version))

        async def there(count: int = n) -> bool:
            info = await bus.js.stream_info(settings.stream)
            return bool(info.state.messages >= count)

        await until(there, what=f"event {n} on the stream, long before a poll", timeout=5)
    ids = [str(e.event_id) for e in sent]
    await asyncio.sleep(0.3)  # room for a copy the server failed to drop
    on_stream = await _on_stream(bus)
    assert sorted(on_stream) == sorted(ids)  # each once
    for aggregate in (x, y):  # each aggregate in its versions' order
        mine = [str(e.event_id) for e in sent if e.aggregate_id == aggregate]
        assert [i for i in on_stream if i in mine] == mine
    assert other.published == 3  # x1, y1, y2: the other replica's own
    await other.stop()
    await leader.stop()
    leader.store.close()
    other.store.close()
