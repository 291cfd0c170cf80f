"""Wiring of the hitl process: the gate consumer, the decision service and the deadline loop."""

from __future__ import annotations

import asyncio
import functools
import os

from baton_common.service import Runtime, serving, timer_loop
from baton_common.settings import Settings
from baton_common.store import run_sync

from baton_hitl.application import HitlApp
from baton_hitl.handlers import TIMER_BATCH, fire_due_timers, hitl_consumer
from baton_hitl.rpc import Decisions


async def start_hitl(settings: Settings) -> Runtime:
    """Everything running but the signal handlers and health port (``serve_forever``)."""
    runtime = await Runtime.open("hitl", settings, store="hitl")
    assert runtime.store is not None
    app = HitlApp(runtime.store)
    lock = asyncio.Lock()  # one writer at a time in this process: consumer, deadlines, decisions
    await runtime.start_consumer(hitl_consumer(runtime, app, lock))
    await Decisions(runtime, app, lock).server().start()
    # The loop sleeps until the next deadline (TimerWake); the interval is only the safety look.
    interval = float(os.environ.get("BATON_TIMER_INTERVAL", settings.safety_poll_s))
    fire = functools.partial(fire_due_timers, runtime, app, lock)
    runtime.spawn(timer_loop(runtime.store, fire, interval, "deadlines", TIMER_BATCH), "deadlines")
    _metrics(runtime, app)
    return runtime


run_hitl = serving(start_hitl)


def _metrics(runtime: Runtime, app: HitlApp) -> None:
    pending = [0.0]

    async def count() -> None:  # a scan of the store: after a scrape, at most every 5 s
        pending[0] = float(await run_sync(app.pending_count))

    runtime.samplers.append(count)
    runtime.metrics["approvals_pending"] = lambda: pending[0]
    runtime.metrics["approval_decision_seconds_sum"] = lambda: app.decision_seconds[0]
    runtime.metrics["approval_decision_seconds_count"] = lambda: float(app.decision_seconds[1])
