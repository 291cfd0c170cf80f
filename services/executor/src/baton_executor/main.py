"""Wiring of the executor process (orchestration) and the worker process (tool calls)."""

from __future__ import annotations

import asyncio
import functools
import os
import socket

from baton_common.contracts import TaskFinished
from baton_common.kit.toolrunner import RESULTS
from baton_common.service import Runtime, timer_loop
from baton_common.settings import Settings
from baton_common.workspaces import PolicyReader

from baton_executor import cache
from baton_executor.admission import DEFAULT_STEPS_IN_FLIGHT, StoreAdmission, policy_reader
from baton_executor.application import ExecutorApp
from baton_executor.cache import StoreCache
from baton_executor.extensions import HookedInline, keep_catalogue, serve_discovery
from baton_executor.handlers import TIMER_BATCH, TIMER_COMMITS, executor_consumer, fire_due_timers
from baton_executor.inline import Inline, never
from baton_executor.mcp.wiring import open_mcp
from baton_executor.worker import Worker


async def run_executor(settings: Settings) -> None:
    runtime = await Runtime.open("executor", settings, store="executor")
    assert runtime.store is not None
    steps_in_flight = int(
        os.environ.get("BATON_WORKSPACE_STEPS_IN_FLIGHT", DEFAULT_STEPS_IN_FLIGHT)
    )
    admission = StoreAdmission(
        runtime.store,
        policy_reader(settings.database_url, settings.db_schema),
        steps_in_flight=steps_in_flight,
    )
    results = StoreCache(runtime.store.datastore) if hasattr(runtime.store, "datastore") else None
    # Pure tools run in this process unless BATON_INLINE_TOOLS=0 (then workers run every step).
    inline_on = os.environ.get("BATON_INLINE_TOOLS", "1").lower() not in {"0", "false", "off"}
    policies = PolicyReader(settings.database_url, settings.db_schema)
    inline = HookedInline(Inline(), policies) if inline_on else never  # hooks: steps to workers
    app = ExecutorApp(runtime.store, admission=admission, results=results, inline=inline)
    for name in cache.STATS:
        runtime.metrics[f"cache_{name}_total"] = functools.partial(cache.stat, name)
    lock = asyncio.Lock()
    consumer = await runtime.start_consumer(executor_consumer(runtime, app, lock))
    await consumer.listen_direct(runtime.bus.direct_subject("executor"))  # the gateway's plans
    await consumer.listen_direct(  # the workers' results; their stream copies are the durable path
        runtime.bus.direct_subject(RESULTS), types=frozenset({TaskFinished.TYPE}), signed=False
    )
    # The executor announces the tools (a scan now and on `tools refresh`); workers only follow
    # the catalogue: their bus key cannot publish it (busauth.GRANTS).
    scanned_by = f"executor@{socket.gethostname()}:{os.getpid()}"
    registry = await open_mcp(runtime, scanned_by)
    await serve_discovery(runtime.bus, scanned_by, registry.add_to)
    runtime.spawn(keep_catalogue(runtime.bus), "catalogue")
    # The loop sleeps until the next timer (TimerWake); the interval is only the safety look.
    interval = float(os.environ.get("BATON_TIMER_INTERVAL", settings.safety_poll_s))
    fire = functools.partial(fire_due_timers, runtime, app, lock)
    runtime.spawn(timer_loop(runtime.store, fire, interval, "timers", TIMER_BATCH), "timers")
    runtime.metrics["executions_cached"] = lambda: float(len(app.cache))
    runtime.metrics["timer_commits_total"] = lambda: float(TIMER_COMMITS[0])
    await runtime.serve_forever()


async def run_worker(settings: Settings) -> None:
    runtime = await Runtime.open("worker", settings)
    worker = Worker(runtime.bus, concurrency=int(os.environ.get("BATON_WORKER_CONCURRENCY", "64")))
    await worker.start()
    runtime.metrics["worker_completed_total"] = lambda: float(worker.completed)
    runtime.metrics["worker_running"] = lambda: float(len(worker.running))
    runtime.on_stop.append(worker.stop)
    runtime.watched.append("workers")
    await runtime.serve_forever()
