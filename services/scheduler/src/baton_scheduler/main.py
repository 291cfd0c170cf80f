"""Wiring of the scheduler process: the consumer, the tick loop and the API over NATS."""

from __future__ import annotations

import asyncio
import functools
import os
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
from baton_common.service import Runtime, every, serving, timer_loop
from baton_common.settings import Settings
from baton_common.startsnapshots import StartSnapshots
from baton_common.store import run_sync
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

from baton_scheduler.application import SchedulerApp
from baton_scheduler.commands import Commands
from baton_scheduler.handlers import TIMER_BATCH, fire_due_timers, scheduler_consumer
from baton_scheduler.rpc import SchedulerCalls

NAME = "scheduler"  # its row in the start snapshots


async def start_scheduler(settings: Settings) -> Runtime:
    """Everything running but the signal handlers and health port (``serve_forever``)."""
    runtime = await Runtime.open("scheduler", settings, store="scheduler")
    assert runtime.store is not None
    grace = float(os.environ.get("BATON_SCHEDULE_GRACE", "2"))
    snapshots = await run_sync(StartSnapshots, settings.database_url, settings.db_schema, NAME)
    app = SchedulerApp(
        runtime.store,
        ExecutionViews(settings),
        timedelta(seconds=grace),
        snapshots,
        settings.snapshot_every,
    )
    await run_sync(app.start)  # the objects as the log says, before anything is answered
    lock = asyncio.Lock()  # one writer at a time in this process: consumer, ticks, API calls
    await runtime.start_consumer(scheduler_consumer(runtime, app, lock))
    await SchedulerCalls(runtime, Commands(app), lock).server().start()
    # Ticks fire on time without polling: the loop sleeps until the next one is due, and a
    # schedule committed here wakes it (TimerWake); the interval is only the safety look.
    interval = float(os.environ.get("BATON_SCHEDULER_INTERVAL", settings.safety_poll_s))
    fire = functools.partial(fire_due_timers, runtime, app, lock)
    runtime.spawn(timer_loop(runtime.store, fire, interval, "ticks", TIMER_BATCH), "ticks")

    async def snapshot() -> None:
        async with lock:  # the objects do not move while they are written down
            await run_sync(app.snapshot)

    runtime.spawn(every(60.0, snapshot, "snapshots"), "snapshots")
    for name in app.metrics():
        runtime.metrics[name] = _metric(app, name)
    return runtime


run_scheduler = serving(start_scheduler)


def _metric(app: SchedulerApp, name: str) -> Any:
    return lambda: app.metrics()[name]


class ExecutionViews:
    """An execution's plan name and status from the projections, for trigger filters."""

    def __init__(self, settings: Settings) -> None:
        self.url, self.schema = settings.database_url, settings.db_schema
        self.conn: psycopg.Connection[Any] | None = None

    def __call__(self, execution_id: UUID) -> dict[str, Any] | None:
        if self.conn is None or self.conn.closed:
            self.conn = psycopg.connect(self.url, autocommit=True, row_factory=dict_row)  # type: ignore[arg-type]
        query = SQL("SELECT view FROM {s}.executions WHERE id = %s").format(
            s=Identifier(self.schema)
        )
        try:
            row = self.conn.execute(query, (execution_id,)).fetchone()
        except psycopg.Error:
            self.conn.close()
            raise
        if row is None:
            return None
        view = row["view"]
        return {
            "plan_name": (view.get("plan") or {}).get("name"),
            "status": view.get("status"),
            "request": view.get("request"),
            "inputs": view.get("inputs"),
            "error": view.get("error"),
            "schedule_id": view.get("schedule_id"),
            "trigger_id": view.get("trigger_id"),
        }
