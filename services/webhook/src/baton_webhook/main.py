"""Wiring of the webhook process: the inbound HTTP listener, the event consumer, the request/reply
server for the gateway, and the sender of outbound attempts."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from baton_common.kit.httpserver import QuietServer
from baton_common.sealing import Sealer
from baton_common.service import Runtime, serving, timer_loop
from baton_common.settings import Settings
from baton_common.store import PostgresEventStore
from fastapi import FastAPI

from baton_webhook.application import WebhookApp
from baton_webhook.config import WebhookSettings
from baton_webhook.handlers import Subscriptions, webhook_consumer
from baton_webhook.inbound import create_inbound
from baton_webhook.outbound import TIMER_BATCH, Sender
from baton_webhook.ratelimit import LocalRateLimit, RateLimit, SharedRateLimit
from baton_webhook.rpc import WebhookCalls


async def start_webhook(settings: Settings, hooks: WebhookSettings | None = None) -> Runtime:
    """Everything running but the signal handlers and health port (``serve_forever``)."""
    hooks = hooks or WebhookSettings()
    runtime = await Runtime.open("webhook", settings, store="webhook")
    assert runtime.store is not None
    sealer = await asyncio.to_thread(Sealer.for_store, runtime.store)
    app = WebhookApp(runtime.store, hooks, sealer=sealer)
    subs = Subscriptions(app)
    await runtime.start_consumer(webhook_consumer(runtime, app, subs))
    await WebhookCalls(runtime, app, hooks, subs).server().start()
    sender = Sender(runtime, app, hooks)
    # Attempts start when their timers fall due (TimerWake), not on a poll.
    interval = hooks.sender_interval_s or settings.safety_poll_s
    loop = timer_loop(runtime.store, sender.tick, interval, "deliveries", TIMER_BATCH)
    runtime.spawn(loop, "deliveries")
    inbound = create_inbound(runtime, app, await _rate_limit(runtime, settings))
    await _listen(runtime, inbound, hooks)
    runtime.on_stop.append(sender.stop)
    runtime.metrics["webhook_deliveries_in_flight"] = lambda: float(len(sender.inflight))
    counts = inbound.state.counts
    runtime.metrics["webhooks_accepted_total"] = lambda: float(counts[202] + counts[200])
    runtime.metrics["webhooks_refused_total"] = lambda: float(
        sum(n for status, n in counts.items() if status >= 400)
    )
    return runtime


run_webhook = serving(start_webhook)


async def _rate_limit(runtime: Runtime, settings: Settings) -> RateLimit:
    """One count per endpoint across every replica, in the store's database."""
    if not isinstance(runtime.store, PostgresEventStore):
        return LocalRateLimit()
    shared = SharedRateLimit(settings.database_url, settings.db_schema)
    await shared.open()
    runtime.on_stop.append(shared.close)
    return shared


async def _listen(runtime: Runtime, api: FastAPI, hooks: WebhookSettings) -> None:
    config = uvicorn.Config(
        api,
        host=hooks.host,
        port=hooks.port,
        log_level="warning",
        ws="none",  # no WebSocket route: uvicorn loads no WebSocket library (issue 32)
        log_config=None,  # uvicorn's records go through the service's structured handler
        lifespan="off",
    )  # type: ignore[arg-type]
    server = QuietServer(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # the runtime owns signals
    runtime.spawn(server.serve(), "inbound")

    async def stop() -> None:  # first: no new webhooks while the rest drains
        server.exit()
        await asyncio.sleep(0.2)

    runtime.on_stop.insert(0, stop)
