"""Bus subscribers of the scheduler: executions that ended (overlap policies) and the events
triggers listen to; and the tick loop, which commits like a consumer does."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from baton_common.consumer import Consumer, Delivery
from baton_common.service import Runtime, fire_due
from baton_common.store import Commit, run_sync
from nats.aio.msg import Msg

from baton_scheduler.application import SUBJECTS, SchedulerApp

log = logging.getLogger(__name__)
TIMER_BATCH = 200


def scheduler_consumer(runtime: Runtime, app: SchedulerApp, lock: asyncio.Lock) -> Consumer:
    assert runtime.store is not None
    store = runtime.store
    seen = [-1]  # the store's last position when what exists was last read

    async def on_messages(batch: list[Delivery]) -> Commit:
        return await run_sync(app.handle, batch)  # reads the store: off the loop

    async def wanted(msgs: Sequence[Msg]) -> set[int]:
        """Only the events a trigger listens to, and those of workspaces with schedules, are
        decoded: the others (most, where no automation is set up) cost an ack. What exists is
        read again first if the store moved since (another replica, or this one's API, may
        have just made it): one cheap look at its last position, taken before the read."""
        top = await store.max_position_async()
        async with lock:
            if top != seen[0]:
                await run_sync(app.refresh)
                seen[0] = top
            scheduled, listened = app.interest()
        keep = set()
        for i, m in enumerate(msgs):
            ws, kind = runtime.bus.workspace_of(m.subject), (m.headers or {}).get("Baton-Type")
            if ws in scheduled or kind is None or (ws, kind) in listened:
                keep.add(i)  # (without a type header, decoding tells)
        return keep

    return Consumer(
        runtime.bus,
        runtime.store,
        "scheduler",
        SUBJECTS,
        on_messages,
        batch=200,
        relay=runtime.relay,
        lock=lock,  # shared with the tick loop and the API calls of this process
        linger_s=0.1,  # triggers on other executions' events: off the latency path
        # An event that fires nothing and ends no run commits nothing, not even its inbox row:
        # seen again, it is matched again. One that does is committed with its inbox row.
        record_empty=False,
        wanted=wanted,
    )


async def fire_due_timers(runtime: Runtime, app: SchedulerApp, lock: asyncio.Lock) -> int:
    """Handle due ticks (the kit's ``fire_due``). The tick's events, its start requests and the
    schedule's next timer are one commit, so a tick is handled once even when the process dies
    around it, and two replicas that take the same tick are settled by the schedule's version."""
    return await fire_due(runtime, lock, app.fire, TIMER_BATCH, "ticks", trace="schedule tick")
