"""A service's timer loop fires a timer when it falls due, not up to an interval later: it sleeps
until the earliest timer it saw, and a commit of this process that sets a sooner one wakes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from baton_common.service import timer_loop
from baton_common.store import Commit, MemoryEventStore, Timer, commit_of

INTERVAL_S = 30.0  # far longer than any wait below: a timer that fires came from the wake-up


async def run_loop(store: MemoryEventStore, fired: list[tuple[str, float]]) -> asyncio.Task[None]:
    async def fire() -> int:
        due = await store.due_timers_async(datetime.now(UTC), 10)
        if due:
            store.commit(Commit(timers_clear=[t.timer_id for t in due]))
            fired.extend((t.timer_id, time.monotonic()) for t in due)
        return len(due)

    return asyncio.create_task(timer_loop(store, fire, INTERVAL_S, "test timers", 10))


async def first_fired(fired: list[tuple[str, float]], started: float) -> None:
    while not fired and time.monotonic() - started < 10:
        await asyncio.sleep(0.02)


async def test_a_timer_known_at_the_last_look_fires_when_due() -> None:
    store = MemoryEventStore("svc")
    soon = datetime.now(UTC) + timedelta(seconds=0.3)
    store.commit(
        Commit(timers_set=[Timer("soon", soon, {}), Timer("later", soon + timedelta(hours=1), {})])
    )
    fired: list[tuple[str, float]] = []
    started = time.monotonic()
    loop = await run_loop(store, fired)
    try:
        while not fired and time.monotonic() - started < 10:
            await asyncio.sleep(0.02)
    finally:
        loop.cancel()
    assert [name for name, _ in fired] == ["soon"]  # the later one is not due
    assert fired[0][1] - started < 5  # by its own time, not the 30 s interval


async def woken(act: Callable[[MemoryEventStore], Awaitable[object]]) -> list[tuple[str, float]]:
    """Let the loop look, find nothing and sleep for its interval; then ``act``: what fired,
    with times since the act."""
    store = MemoryEventStore("svc")
    fired: list[tuple[str, float]] = []
    loop = await run_loop(store, fired)
    try:
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await act(store)
        await first_fired(fired, started)
    finally:
        loop.cancel()
    return [(name, at - started) for name, at in fired]


async def test_a_commit_that_sets_a_sooner_timer_wakes_the_sleeping_loop() -> None:
    async def sooner(store: MemoryEventStore) -> object:
        due = datetime.now(UTC) + timedelta(seconds=0.2)
        return await commit_of(store, Commit(timers_set=[Timer("new", due, {})]))

    fired = await woken(sooner)
    assert [name for name, _ in fired] == ["new"]
    assert fired[0][1] < 5


async def test_a_failing_look_waits_the_interval_instead_of_spinning() -> None:
    store = MemoryEventStore("svc")
    calls = 0

    async def fire() -> int:
        nonlocal calls
        calls += 1
        raise RuntimeError("store away")

    loop = asyncio.create_task(timer_loop(store, fire, 0.2, "test timers", 10))
    await asyncio.sleep(0.5)
    loop.cancel()
    assert 1 <= calls <= 4  # about one look per interval, not one per loop turn


async def test_a_release_of_lock_claims_makes_the_sleeping_loop_look_soon() -> None:
    """The store gives a released lock's first waiter a due-now timer in the commit itself
    (SQL, not ``timers_set``): the loop must look without waiting out its interval."""

    async def release(store: MemoryEventStore) -> object:
        # the waiter's wake-up, as the release's own statement writes it (no wake of its own)
        store.recorder.timers["waiter"] = Timer("waiter", datetime.now(UTC), {})
        return await commit_of(store, Commit(locks_release=["holder"]))

    fired = await woken(release)
    assert [name for name, _ in fired] == ["waiter"]
    assert fired[0][1] < 5  # about RELEASE_LOOK_S, not the 30 s interval


async def test_a_commit_that_sets_a_timer_due_later_wakes_the_loop_then_not_at_once() -> None:
    """A look at once would find nothing due; its round trip would only share the store's
    connection with the commits that follow (a chain of pure steps sets its resume timer in its
    first commit and clears it in its last)."""
    store = MemoryEventStore("svc")
    looks: list[float] = []
    fired: list[str] = []

    async def fire() -> int:
        looks.append(time.monotonic())
        due = await store.due_timers_async(datetime.now(UTC), 10)
        if due:
            store.commit(Commit(timers_clear=[t.timer_id for t in due]))
            fired.extend(t.timer_id for t in due)
        return len(due)

    loop = asyncio.create_task(timer_loop(store, fire, INTERVAL_S, "test timers", 10))
    try:
        await asyncio.sleep(0.2)  # it looked once, found nothing and sleeps for its interval
        started = time.monotonic()
        due = datetime.now(UTC) + timedelta(seconds=0.5)
        await commit_of(store, Commit(timers_set=[Timer("resume", due, {})]))
        while not fired and time.monotonic() - started < 10:
            await asyncio.sleep(0.02)
    finally:
        loop.cancel()
    after = [at - started for at in looks if at >= started]
    assert fired == ["resume"] and len(after) == 1  # one look, when it fell due
    assert 0.4 <= after[0] < 5
