"""Lock claims and rate places in PostgreSQL: what the executor's admission relies on."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from baton_common.settings import Settings
from baton_common.store import Commit, ConcurrencyConflict, LockRow, PostgresEventStore, Timer

pytestmark = pytest.mark.integration


def held(name: str, holder: str, mode: str = "exclusive", ticket: int = 1, **kw: object) -> LockRow:
    # A lease from now, not from the module's import: a test run more than its length after
    # collection (late in a parallel run) found every "live" lease lapsed.
    lease = kw.pop("lease", None) or datetime.now(UTC) + timedelta(minutes=5)
    return LockRow(name, holder, mode, ticket, True, lease_until=lease, **kw)  # type: ignore[arg-type]


def queued(name: str, holder: str, ticket: int, mode: str = "exclusive") -> LockRow:
    return LockRow(name, holder, mode, ticket, False, wake_timer=f"admit:{holder}",
                   wake={"holder": holder})  # fmt: skip


@pytest.fixture
def store(settings: Settings) -> PostgresEventStore:
    return PostgresEventStore(settings.database_url, "executor", schema=settings.db_schema)


def test_a_clashing_grant_refuses_the_whole_commit(store: PostgresEventStore) -> None:
    store.commit(Commit(locks_put=[held("repo", "a:s")]))
    with pytest.raises(ConcurrencyConflict):
        store.commit(Commit(locks_put=[held("other", "b:s"), held("repo", "b:s")]))
    assert [r.holder for r in store.lock_rows(["repo", "other"])] == ["a:s"]
    store.commit(Commit(locks_put=[held("db", "a:s", "shared"), held("db", "b:s", "shared")]))
    with pytest.raises(ConcurrencyConflict):
        store.commit(Commit(locks_put=[held("db", "c:s")]))


def test_a_lapsed_lease_frees_the_lock(store: PostgresEventStore) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    store.commit(Commit(locks_put=[held("repo", "dead:s", lease=past)]))
    store.commit(Commit(locks_put=[held("repo", "b:s")]))  # no clash: the dead holder lapsed
    assert {r.holder for r in store.lock_rows(["repo"]) if r.live(datetime.now(UTC))} == {"b:s"}


def test_a_release_wakes_the_first_waiters_at_once(store: PostgresEventStore) -> None:
    later = datetime.now(UTC) + timedelta(minutes=10)
    store.commit(Commit(locks_put=[held("repo", "a:s"), queued("repo", "c:s", 3),
                                   queued("repo", "b:s", 2), queued("repo", "d:s", 4)]))  # fmt: skip
    assert not store.due_timers(later, 10)
    store.commit(Commit(locks_release=["a:s"]))
    woken = store.due_timers(datetime.now(UTC) + timedelta(seconds=1), 10)
    assert sorted(t.timer_id for t in woken) == ["admit:b:s", "admit:c:s"]  # ticket order
    assert woken[0].payload["holder"] in {"b:s", "c:s"}


def test_slot_usage_names_live_holders_and_the_first_queued_ticket(
    store: PostgresEventStore,
) -> None:
    now = datetime.now(UTC)
    slot = {"mode": "slot", "capacity": 2}
    store.commit(Commit(locks_put=[held("steps:w", "a:s", **slot), held("steps:w", "b:s", ticket=2, **slot),
                                   queued("steps:w", "c:s", 7, "slot")]))  # fmt: skip
    assert store.slot_usage(["steps:w", "steps:v"], now) == {
        "steps:w": ({"a:s", "b:s"}, 7),
        "steps:v": (set(), None),
    }
    # A place granted after a read (each replica counts before it commits) is not checked.
    store.commit(Commit(locks_put=[held("steps:w", "c:s", ticket=7, **slot)]))


def place(holder: str, capacity: int = 2) -> LockRow:
    return held("steps:w", holder, "slot", capacity=capacity)


def test_a_place_granted_unread_past_its_slots_capacity_refuses_the_whole_commit(
    store: PostgresEventStore,
) -> None:
    bound = [("steps:w", 2)]
    store.commit(Commit(locks_put=[place("a:s")], places_checked=bound))
    store.commit(Commit(locks_put=[place("b:s")], places_checked=bound))
    timer = Timer("t", datetime.now(UTC), {})
    with pytest.raises(ConcurrencyConflict, match="every place of 'steps:w' is taken"):
        store.commit(Commit(locks_put=[place("c:s")], places_checked=bound, timers_set=[timer]))
    with pytest.raises(ConcurrencyConflict):  # the library's path (it grants a lock) checks too
        store.commit(Commit(locks_put=[place("c:s"), held("repo", "c:s")], places_checked=bound))
    assert {r.holder for r in store.lock_rows(["steps:w", "repo"])} == {"a:s", "b:s"}
    assert not store.due_timers(datetime.now(UTC) + timedelta(seconds=1), 10)
    # A place handed on (one released as one is taken) keeps the count: it passes the check.
    store.commit(Commit(locks_release=["a:s"], locks_put=[place("c:s")], places_checked=bound))
    # Lapsed by the database's clock, which the store reads (``now()``), whatever this one says
    # (`make test-clock-ahead` runs the tests' clock a year ahead of PostgreSQL's).
    lapsed = held("steps:w", "b:s", "slot", capacity=2, lease=datetime(2001, 1, 1, tzinfo=UTC))
    store.commit(Commit(locks_put=[lapsed]))
    store.commit(Commit(locks_put=[place("d:s")], places_checked=bound))  # a lapsed one is free


@pytest.mark.parametrize("lock", [False, True], ids=["one-statement", "library-path"])
def test_replicas_granting_places_unread_at_once_never_pass_the_bound(
    settings: Settings, lock: bool
) -> None:
    """Eight replicas, each granting a place without a read, all at the same moment (ten
    times, a slot each time): the commits take turns on the slot, so exactly its capacity of
    them get through."""
    stores = [
        PostgresEventStore(settings.database_url, "executor", schema=settings.db_schema)
        for _ in range(8)
    ]
    start = threading.Barrier(len(stores))

    def grant(i: int, slot: str) -> bool:
        claims = [held(slot, f"r{i}:s", "slot", capacity=3)]
        claims += [held(f"repo{i}", f"r{i}:s")] if lock else []
        start.wait()
        try:
            stores[i].commit(Commit(locks_put=claims, places_checked=[(slot, 3)]))
        except ConcurrencyConflict:
            return False
        return True

    with ThreadPoolExecutor(len(stores)) as pool:
        for n in range(10):
            slot = f"steps:w{n}"
            granted = list(pool.map(grant, range(len(stores)), [slot] * len(stores)))
            assert sum(granted) == 3
            assert len(stores[0].lock_rows([slot])) == 3
    for s in stores:
        s.close()


def test_rate_places_are_spaced_and_shared(settings: Settings, store: PostgresEventStore) -> None:
    other = PostgresEventStore(settings.database_url, "executor", schema=settings.db_schema)
    now = datetime.now(UTC)
    places = [s.reserve("ws/tool", 0.2, now) for s in (store, other, store, other)]
    assert [round((p - now).total_seconds(), 3) for p in places] == [0.0, 0.2, 0.4, 0.6]


def test_a_place_given_again_in_the_releasing_commit_wakes_one_waiter_only(
    store: PostgresEventStore,
) -> None:
    """The library's path (the commit grants a checked lock) wakes as the one statement does."""
    store.commit(Commit(locks_put=[held("slot", "a:s", "slot"), queued("slot", "b:s", 2, "slot"),
                                   queued("slot", "c:s", 3, "slot"),
                                   queued("slot", "d:s", 4, "slot")]))  # fmt: skip
    store.commit(
        Commit(
            locks_release=["a:s"],
            locks_put=[held("slot", "b:s", "slot", ticket=2), held("repo", "b:s")],
        )
    )
    woken = store.due_timers(datetime.now(UTC) + timedelta(seconds=1), 10)
    assert [t.timer_id for t in woken] == ["admit:c:s"]


def test_a_waiter_on_two_freed_names_is_woken_once(store: PostgresEventStore) -> None:
    store.commit(Commit(locks_put=[held("a", "x:s"), held("b", "y:s"),
                                   queued("a", "w:s", 5), queued("b", "w:s", 5)]))  # fmt: skip
    store.commit(Commit(locks_release=["x:s", "y:s"]))
    woken = store.due_timers(datetime.now(UTC) + timedelta(seconds=1), 10)
    assert [t.timer_id for t in woken] == ["admit:w:s"]


def test_lock_rows_of_some_holders(store: PostgresEventStore) -> None:
    store.commit(Commit(locks_put=[held("n", "a", "shared"), held("n", "b", "shared")]))
    assert [r.holder for r in store.lock_rows(["n"], ["b"])] == ["b"]
    assert len(store.lock_rows(["n"])) == 2


def test_queued_claims_come_in_ticket_order_with_their_wake_ups(store: PostgresEventStore) -> None:
    store.commit(Commit(locks_put=[queued("q", "late", 9), queued("q", "early", 3)]))
    rows = store.queued("q", 1)
    assert [(r.holder, r.wake) for r in rows] == [("early", {"holder": "early"})]


def test_a_holder_released_and_claimed_again_in_one_commit_keeps_the_new_claim(
    store: PostgresEventStore,
) -> None:
    store.commit(Commit(locks_put=[held("a", "h:s"), held("b", "h:s")]))
    store.commit(Commit(locks_release=["h:s"], locks_put=[held("a", "h:s", ticket=5)]))
    assert [(r.name, r.ticket) for r in store.lock_rows(["a", "b"])] == [("a", 1)]


def test_extending_a_holders_lease(store: PostgresEventStore) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    store.commit(Commit(locks_put=[held("a", "h:s"), queued("a", "w:s", 9)]))
    store.commit(Commit(locks_extend=[("h:s", later), ("w:s", later)]))
    rows = {r.holder: r.lease_until for r in store.lock_rows(["a"])}
    assert rows == {"h:s": later, "w:s": None}  # only held claims have a lease
