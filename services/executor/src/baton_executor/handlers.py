"""Bus subscribers of the executor: plans, commands and task results in; execution events out."""

from __future__ import annotations

import asyncio
import functools
from datetime import UTC, datetime

from baton_common.consumer import Consumer, Delivery, commit_follow_ups
from baton_common.recovery import StoreRecovery
from baton_common.service import Runtime, inbox_keep
from baton_common.store import Commit, PostgresEventStore, commit_of

from baton_executor.application import SUBJECTS, ExecutorApp
from baton_executor.redispatch import redispatch_unsettled

TIMER_BATCH = 500
TIMER_COMMITS = [0]  # exported as a metric


def executor_consumer(runtime: Runtime, app: ExecutorApp, lock: asyncio.Lock) -> Consumer:
    assert runtime.store is not None

    async def on_messages(batch: list[Delivery]) -> Commit:
        return app.handle(batch)  # handled and committed under the same lock

    consumer = Consumer(
        runtime.bus,
        runtime.store,
        "executor",
        SUBJECTS,
        on_messages,
        batch=500,
        relay=runtime.relay,
        on_conflict=app.invalidate,
        lock=lock,
        precheck=False,
        follow_up=app.follow_up,  # pure steps that wait for the commit before them
    )
    if isinstance(runtime.store, PostgresEventStore):
        # What the stream dropped is read from the stores; the workers' outcomes are not in
        # any: their tasks go to the workers again.
        keep = inbox_keep(runtime.settings)
        then = functools.partial(redispatch_unsettled, runtime)
        StoreRecovery(consumer, runtime.store, runtime.settings, keep, then=then)
    return consumer


async def fire_due_timers(runtime: Runtime, app: ExecutorApp, lock: asyncio.Lock) -> int:
    """Hand due timers (retries, deadlines) to their executions; commit like a consumer does."""
    assert runtime.store is not None
    timers = await runtime.store.due_timers_async(datetime.now(UTC), TIMER_BATCH)
    if not timers:
        return 0
    async with lock:
        try:
            commit = app.fire(timers)
            rows = await commit_of(runtime.store, commit)
            TIMER_COMMITS[0] += 1
        except Exception:
            app.invalidate()
            raise
        if runtime.relay:
            runtime.relay.committed(rows)
        TIMER_COMMITS[0] += await commit_follow_ups(
            runtime.store, runtime.relay, app.follow_up, app.invalidate
        )
    return len(timers)
