"""Wiring of the calendar process: its store, the calendar tools' consumer and the API server."""

from __future__ import annotations

import asyncio
import functools

from baton_common.sealing import Sealer
from baton_common.service import Runtime, every, serving
from baton_common.settings import Settings
from baton_common.startsnapshots import StartSnapshots
from baton_common.store import run_sync

from baton_calendar.application import CalendarApp
from baton_calendar.rpc import calendar_server
from baton_calendar.tools import ToolWorker


async def start_calendar(settings: Settings) -> Runtime:
    """Everything running but the signal handlers and health port (``serve_forever``)."""
    runtime = await Runtime.open("calendar", settings, store="calendar")
    assert runtime.store is not None
    sealer = await asyncio.to_thread(Sealer.for_store, runtime.store)
    app = CalendarApp(runtime.store, sealer)
    if runtime.relay is not None:
        app.committed = runtime.relay.committed
    directory = app.directory
    directory.snapshots = await run_sync(
        StartSnapshots, settings.database_url, settings.db_schema, "calendar"
    )
    directory.snapshot_every = settings.snapshot_every
    await run_sync(directory.start)  # from the newest snapshot and the log after it
    runtime.spawn(
        every(60.0, functools.partial(run_sync, directory.snapshot), "snapshots"), "snapshots"
    )
    tools = ToolWorker(runtime.bus, app)
    await tools.start()
    await calendar_server(runtime, app).start()
    runtime.on_stop.append(tools.stop)
    runtime.metrics["calendar_tool_calls"] = lambda: float(tools.completed)
    return runtime


run_calendar = serving(start_calendar)
