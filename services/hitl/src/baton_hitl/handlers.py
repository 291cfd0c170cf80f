"""Bus subscribers of the hitl service: gate requests and cancelled steps in, approval events out;
and the deadline loop, which commits like a consumer does."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from baton_common.consumer import Consumer, Delivery
from baton_common.service import Runtime
from baton_common.store import Commit, ConcurrencyConflict, commit_of, run_sync

from baton_hitl.application import SUBJECTS, HitlApp

log = logging.getLogger(__name__)
TIMER_BATCH = 200


def hitl_consumer(runtime: Runtime, app: HitlApp, lock: asyncio.Lock) -> Consumer:
    assert runtime.store is not None

    async def on_messages(batch: list[Delivery]) -> Commit:
        return await run_sync(app.handle, batch)  # gates are loaded from the store: off the loop

    return Consumer(
        runtime.bus,
        runtime.store,
        "hitl",
        SUBJECTS,
        on_messages,
        batch=100,
        relay=runtime.relay,
        lock=lock,  # shared with the deadlines and the decisions of this process
    )


async def fire_due_timers(runtime: Runtime, app: HitlApp, lock: asyncio.Lock) -> int:
    """Act on due deadlines. The timers are cleared in the commit that records what they did,
    so a deadline fires once even when the process dies around it."""
    assert runtime.store is not None
    timers = await runtime.store.due_timers_async(datetime.now(UTC), TIMER_BATCH)
    if not timers:
        return 0
    async with lock:
        commit = await run_sync(app.fire, timers)
        try:
            rows = await commit_of(runtime.store, commit)
        except ConcurrencyConflict:  # another replica, or a decision, got there first
            log.info("deadlines: a gate changed meanwhile; they are read again")
            return 0
    if runtime.relay:
        runtime.relay.committed(rows)
    return len(timers)
