"""Bus subscribers of the executor: plans, commands and task results in; execution events out."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from baton_common.consumer import Consumer, Delivery
from baton_common.service import Runtime
from baton_common.store import Commit, MemoryEventStore, PostgresEventStore, run_sync

from baton_executor.application import SUBJECTS, ExecutorApp

TIMER_BATCH = 500
TIMER_COMMITS = [0]  # exported as a metric


class _WithClaims:
    """The store as the executor's consumer sees it. The generic consumer rebuilds the commit
    from its events, inbox and timers only; this puts back the lock claims the application
    decided for the same batch, so they are written in the same transaction."""

    def __init__(self, store: PostgresEventStore | MemoryEventStore) -> None:
        self.store = store
        self.decided: Commit | None = None

    def commit(self, commit: Commit) -> list[tuple[int, bytes]]:
        decided, self.decided = self.decided, None
        if decided is not None and decided.events is commit.events:
            commit = replace(
                commit,
                locks_release=decided.locks_release,
                locks_put=decided.locks_put,
                locks_extend=decided.locks_extend,
            )
        return self.store.commit(commit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def executor_consumer(runtime: Runtime, app: ExecutorApp, lock: asyncio.Lock) -> Consumer:
    assert runtime.store is not None
    store = _WithClaims(runtime.store)

    async def on_messages(batch: list[Delivery]) -> Commit:
        store.decided = app.handle(batch)  # handled and committed under the same lock
        return store.decided

    return Consumer(
        runtime.bus,
        store,  # type: ignore[arg-type]
        "executor",
        SUBJECTS,
        on_messages,
        batch=500,
        relay=runtime.relay,
        on_conflict=app.invalidate,
        lock=lock,
        precheck=False,
    )


async def fire_due_timers(runtime: Runtime, app: ExecutorApp, lock: asyncio.Lock) -> int:
    """Hand due timers (retries, deadlines) to their executions; commit like a consumer does."""
    assert runtime.store is not None
    timers = await run_sync(runtime.store.due_timers, datetime.now(UTC), TIMER_BATCH)
    if not timers:
        return 0
    async with lock:
        try:
            commit = app.fire(timers)
            rows = await run_sync(runtime.store.commit, commit)
            TIMER_COMMITS[0] += 1
        except Exception:
            app.invalidate()
            raise
    if runtime.relay:
        runtime.relay.committed(rows)
    return len(timers)
