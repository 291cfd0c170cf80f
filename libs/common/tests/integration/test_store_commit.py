"""A store commit in one round trip: the same contract as the library's path, on real PostgreSQL.

The contract tests run on both stores, so the in-memory store (unit tests) keeps meaning the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import psycopg
import pytest
from baton_common.contracts import ExecutionRequested
from baton_common.store import (
    Commit,
    ConcurrencyConflict,
    LockRow,
    MemoryEventStore,
    PostgresEventStore,
    Timer,
)

pytestmark = pytest.mark.integration

Store = PostgresEventStore | MemoryEventStore
NOW = datetime.now(UTC)


@pytest.fixture
def pg(database_url: str, schema: str) -> Iterator[PostgresEventStore]:
    store = PostgresEventStore(database_url, "svc", schema=schema)
    yield store
    store.close()


@pytest.fixture(params=["postgres", "memory"])
def store(request: pytest.FixtureRequest) -> Store:
    if request.param == "memory":
        return MemoryEventStore("svc")
    return request.getfixturevalue("pg")  # type: ignore[no-any-return]


def events(aggregate: UUID, versions: range) -> list[ExecutionRequested]:
    return [ExecutionRequested(aggregate_id=aggregate, aggregate_version=v) for v in versions]


def test_positions_come_back_in_order_and_are_what_the_log_reads(store: Store) -> None:
    a, b = uuid4(), uuid4()
    first = store.commit(Commit(events=events(a, range(1, 4)), handled=[("c", "m1")]))
    second = store.commit(Commit(events=[*events(b, range(1, 3)), *events(a, range(4, 5))]))
    assert [p for p, _ in first + second] == [1, 2, 3, 4, 5, 6]
    assert store.raw_notifications(0, 10) == first + second
    assert [e.aggregate_id for _, e in store.notifications(3, 10)] == [b, b, a]
    assert [e.aggregate_version for e in store.load(a)] == [1, 2, 3, 4]
    assert store.max_position() == 6
    assert store.handled("c", ["m1", "m2"]) == {"m1"}


def _nothing_more_written(store: Store, before: int) -> None:
    assert store.max_position() == before
    assert store.handled("c", ["new"]) == set()
    assert [t.timer_id for t in store.due_timers(NOW + timedelta(days=1), 10)] == ["kept"]


def test_a_duplicate_version_writes_nothing(store: Store) -> None:
    a = uuid4()
    store.commit(Commit(events=events(a, range(1, 3)), timers_set=[Timer("kept", NOW)]))
    with pytest.raises(ConcurrencyConflict):
        store.commit(
            Commit(
                events=[*events(uuid4(), range(1, 3)), *events(a, range(2, 4))],
                handled=[("c", "new")],
                timers_set=[Timer("new", NOW)],
                timers_clear=["kept"],
            )
        )
    _nothing_more_written(store, 2)
    assert [e.aggregate_version for e in store.load(a)] == [1, 2]


async def test_a_commit_of_events_only_keeps_the_contract_on_its_shorter_statement(
    pg: PostgresEventStore,
) -> None:
    a = uuid4()
    only = Commit(events=events(a, range(1, 3)))
    assert pg.recorder.commit_params(only)[0] == pg.recorder.append_statement
    assert pg.recorder.commit_params(Commit(events=only.events, timers_clear=["x"]))[0] == (
        pg.recorder.commit_statement
    )
    assert [p for p, _ in pg.commit(only)] == [1, 2]
    assert [p for p, _ in await pg.commit_async(Commit(events=events(a, range(3, 4))))] == [3]
    for commit in (pg.commit, pg.commit_async):
        with pytest.raises(ConcurrencyConflict, match="duplicate key"):
            done = commit(Commit(events=[*events(uuid4(), range(1, 2)), *events(a, range(3, 4))]))
            if not isinstance(done, list):
                await done
    assert pg.max_position() == 3 and [e.aggregate_version for e in pg.load(a)] == [1, 2, 3]


def test_a_duplicate_inbox_row_writes_nothing(store: Store) -> None:
    store.commit(Commit(handled=[("c", "m1")], timers_set=[Timer("kept", NOW)]))
    with pytest.raises(ConcurrencyConflict):
        store.commit(
            Commit(
                events=events(uuid4(), range(1, 4)),
                handled=[("c", "new"), ("c", "m1")],
                timers_clear=["kept"],
            )
        )
    _nothing_more_written(store, 0)
    # The same message id under another consumer is another message.
    store.commit(Commit(events=events(uuid4(), range(1, 2)), handled=[("d", "m1")]))
    assert store.handled("d", ["m1"]) == {"m1"} and store.max_position() == 1


def test_timers_are_set_and_cleared_in_the_commit(store: Store) -> None:
    later = NOW + timedelta(hours=1)
    store.commit(Commit(timers_set=[Timer("a", NOW), Timer("b", NOW), Timer("c", later)]))
    store.commit(
        Commit(
            events=events(uuid4(), range(1, 2)),
            timers_clear=["a", "b"],
            # Set again in the commit that clears it: the timer stays, the last one wins.
            timers_set=[
                Timer("b", later + timedelta(minutes=1)),
                Timer("d", NOW, {"n": 1}),
                Timer("d", NOW, {"n": 2}),
            ],
        )
    )
    due = store.due_timers(NOW + timedelta(hours=2), 10)
    assert [(t.timer_id, t.payload) for t in due] == [("d", {"n": 2}), ("c", {}), ("b", {})]
    assert [t.timer_id for t in store.due_timers(NOW, 10)] == ["d"]


def test_an_empty_commit_writes_nothing(store: Store) -> None:
    assert store.commit(Commit()) == []
    assert store.commit(Commit(handled=[("c", "m1")])) == []
    assert store.max_position() == 0 and store.handled("c", ["m1"]) == {"m1"}


def slot(holder: str, ticket: int, granted: bool = True) -> LockRow:
    lease = NOW + timedelta(hours=1) if granted else None
    wake = None if granted else f"wake:{holder}"
    return LockRow("slot:ws", holder, "slot", ticket, granted, 2, lease, wake, {"h": holder})


def test_places_in_slots_are_written_with_the_commit(store: Store) -> None:
    """Slot places, queued claims, releases and extensions: what every step of a chain writes."""
    later = NOW + timedelta(hours=2)
    store.commit(
        Commit(events=events(uuid4(), range(1, 2)), locks_put=[slot("a", 1), slot("b", 2)])
    )
    store.commit(Commit(locks_put=[slot("c", 3, False), slot("d", 4, False), slot("e", 5, False)]))
    # a ends and b is extended in the commit that gives a's place to c; c's wake-up is due now
    written = store.commit(
        Commit(
            events=events(uuid4(), range(1, 3)),
            handled=[("c", "m1")],
            locks_release=["a"],
            locks_put=[slot("c", 3)],
            locks_extend=[("b", later)],
        )
    )
    assert [p for p, _ in written] == [2, 3]
    rows = {r.holder: r for r in store.lock_rows(["slot:ws"])}
    assert sorted(rows) == ["b", "c", "d", "e"]
    assert rows["c"].granted and rows["b"].lease_until == later
    # Freed one place and gave it to c in the same commit: only the first waiter not claimed
    # anew (d) is woken, not the next one (e) as well: no place is left for it.
    woken = [(t.timer_id, t.payload) for t in store.due_timers(datetime.now(UTC), 10)]
    assert woken == [("wake:d", {"h": "d"})]
    # Freed one place and gave it to nobody: the first waiter is woken, and the next one.
    store.commit(Commit(locks_release=["b"], timers_clear=["wake:d"]))
    woken = [(t.timer_id, t.payload) for t in store.due_timers(datetime.now(UTC), 10)]
    assert sorted(woken) == [("wake:d", {"h": "d"}), ("wake:e", {"h": "e"})]


def test_a_conflict_writes_no_lock_rows(store: Store) -> None:
    store.commit(Commit(handled=[("c", "m1")], locks_put=[slot("a", 1)]))
    with pytest.raises(ConcurrencyConflict):
        store.commit(
            Commit(
                handled=[("c", "m1")],
                locks_release=["a"],
                locks_put=[slot("b", 2)],
                locks_extend=[("a", NOW + timedelta(days=1))],
            )
        )
    rows = [(r.holder, r.granted, r.lease_until) for r in store.lock_rows(["slot:ws"])]
    assert rows == [("a", True, slot("a", 1).lease_until)]


def test_checked_grants_take_the_library_path_in_the_same_log(store: Store) -> None:
    claim = LockRow("repo", "x:s", "exclusive", 1, True, lease_until=NOW + timedelta(hours=1))
    first = store.commit(Commit(events=events(uuid4(), range(1, 3))))
    locked = store.commit(Commit(events=events(uuid4(), range(1, 2)), locks_put=[claim]))
    last = store.commit(Commit(events=events(uuid4(), range(1, 2)), locks_release=["x:s"]))
    assert [p for p, _ in first + locked + last] == [1, 2, 3, 4]
    assert store.lock_rows(["repo"]) == []


def test_two_stores_share_a_schema(database_url: str, schema: str, pg: PostgresEventStore) -> None:
    other = PostgresEventStore(database_url, "other", schema=schema)
    try:
        pg.commit(Commit(events=events(uuid4(), range(1, 3)), handled=[("c", "m1")]))
        written = other.commit(Commit(events=events(uuid4(), range(1, 2)), handled=[("c", "m1")]))
        assert [p for p, _ in written] == [1]
        assert (pg.max_position(), other.max_position()) == (2, 1)
        assert other.raw_notifications(0, 10) == written
    finally:
        other.close()


def test_stores_created_together_all_start(database_url: str, schema: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresEventStore(database_url, "together", schema=schema).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_concurrent_commits_are_numbered_in_commit_order(pg: PostgresEventStore) -> None:
    """Writers race while a reader follows the log: the reader never sees a position before an
    earlier one is there (a gap filled in later is what the relay would skip), and every
    commit's positions are one run."""
    writers, commits, size = 3, 40, 5
    done = threading.Event()
    seen: list[int] = []
    runs: list[list[int]] = []

    def write() -> None:
        for _ in range(commits):
            written = pg.commit(Commit(events=events(uuid4(), range(1, size + 1))))
            runs.append([p for p, _ in written])

    def follow() -> None:
        while True:
            finished = done.is_set()  # before the read: then every commit is in it
            read = [p for p, _ in pg.raw_notifications(seen[-1] if seen else 0, 1000)]
            seen.extend(read)
            if finished and not read:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join()
    assert seen == list(range(1, writers * commits * size + 1))
    assert all(run == list(range(run[0], run[0] + size)) for run in runs)


def test_a_commit_sends_no_notify(database_url: str, pg: PostgresEventStore) -> None:
    """Nothing LISTENs, and PostgreSQL serialises every notifying commit of a cluster through
    its WAL flush: neither path sends the library's NOTIFY."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'LISTEN "{pg.recorder.channel_name}"')
        pg.commit(Commit(events=events(uuid4(), range(1, 3)), handled=[("c", "m")]))
        claim = LockRow("repo", "x:s", "exclusive", 1, True, lease_until=NOW + timedelta(hours=1))
        pg.commit(Commit(events=events(uuid4(), range(1, 2)), locks_put=[claim]))  # library path
        conn.execute("SELECT 1")  # a round trip: notifications sent by then have arrived
        assert list(conn.notifies(timeout=0.5, stop_after=1)) == []


async def test_a_commit_from_the_event_loop_is_the_same_commit(store: Store) -> None:
    a = uuid4()
    first = await store.commit_async(
        Commit(
            events=events(a, range(1, 3)), handled=[("c", "m1")], timers_set=[Timer("kept", NOW)]
        )
    )
    assert first == store.raw_notifications(0, 10) and [p for p, _ in first] == [1, 2]
    second = store.commit(Commit(events=events(a, range(3, 4))))  # both paths share one log
    assert [p for p, _ in second] == [3]
    with pytest.raises(ConcurrencyConflict):
        await store.commit_async(Commit(events=events(a, range(3, 5)), handled=[("c", "new")]))
    _nothing_more_written(store, 3)
    assert await store.commit_async(Commit()) == []


async def test_the_event_loop_connection_comes_back_after_the_server_drops_it(
    pg: PostgresEventStore, database_url: str
) -> None:
    a = uuid4()
    await pg.commit_async(Commit(events=events(a, range(1, 2))))
    assert pg._aconn is not None
    pid = pg._aconn.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    rows = await pg.commit_async(Commit(events=events(a, range(2, 3))))
    assert [p for p, _ in rows] == [2] and [e.aggregate_version for e in pg.load(a)] == [1, 2]
