"""Bus subscribers of the hitl service: gate requests and cancelled steps in, approval events out;
and the deadline loop, which commits like a consumer does."""

from __future__ import annotations

import asyncio
import logging

from baton_common.consumer import Consumer, Delivery
from baton_common.service import Runtime, fire_due
from baton_common.store import Commit, run_sync

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
    """Act on due deadlines, once each (the kit's ``fire_due``)."""
    return await fire_due(runtime, lock, app.fire, TIMER_BATCH, "deadlines")
