"""Wiring of the gateway process: intake store + relay, read models, HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket

import psycopg
import uvicorn
from baton_common import contracts as c
from baton_common.archive import open_archive
from baton_common.archived import Archives
from baton_common.bus import Bus
from baton_common.consumer import Consumer, Delivery
from baton_common.kit.httpserver import QuietServer
from baton_common.prices import llm_prices
from baton_common.readmodels import create_tables
from baton_common.sealing import Sealer
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_common.store import Commit, run_sync
from baton_common.workspaces import DEFAULT_WORKSPACE
from psycopg.sql import SQL, Identifier

from baton_gateway.access import AccessApp
from baton_gateway.api import create_app
from baton_gateway.application import IntakeApp
from baton_gateway.reads import ViewReader
from baton_gateway.services import Services
from baton_gateway.sessions import SESSIONS_SQL, PostgresSessions

log = logging.getLogger(__name__)


def _create_tables(settings: Settings) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        create_tables(conn, settings.db_schema)
        with conn.transaction():  # replicas start together: one creates, the others wait
            conn.execute("SELECT pg_advisory_xact_lock(77003)")
            for statement in SESSIONS_SQL.split(";"):
                conn.execute(SQL(statement).format(s=Identifier(settings.db_schema)))


def intake_consumer(runtime: Runtime, intake: IntakeApp) -> Consumer:
    """Executions that other services ask for (``intake.start_requested``) and cancels they
    ask for (``intake.cancel_requested``), each recorded once."""

    async def on_messages(batch: list[Delivery]) -> Commit:
        asks = [d.event for d in batch if isinstance(d.event, c.StartRequested)]
        events = await run_sync(intake.on_start_requested, asks)
        cancels = [d.event for d in batch if isinstance(d.event, c.CancelRequested)]
        if cancels:
            events += await run_sync(intake.on_cancel_requested, cancels, events)
        return Commit(events=events)

    assert runtime.store is not None
    return Consumer(
        runtime.bus,
        runtime.store,
        "intake",
        ["*.intake.start_requested", "*.intake.cancel_requested"],
        on_messages,
        batch=200,
        relay=runtime.relay,
    )


def _bootstrap(access: AccessApp) -> None:
    """The default workspace exists; ``BATON_BOOTSTRAP_KEY`` (written by ``baton up``, or a
    deployment's secret) is its first owner key; ``BATON_API_TOKEN`` is the installation token
    (registered, replaced when its value changed, revoked when unset). All idempotent: every
    start asks."""
    access.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    if key := os.environ.get("BATON_BOOTSTRAP_KEY"):
        access.ensure_key(key, DEFAULT_WORKSPACE, "owner", "bootstrap-owner")
    access.ensure_token(os.environ.get("BATON_API_TOKEN") or None)


async def run_gateway(settings: Settings) -> None:
    llm_prices()  # BATON_LLM_PRICES that does not read stops the start, saying why
    runtime = await Runtime.open("gateway", settings, store="gateway")
    assert runtime.store is not None
    await asyncio.to_thread(_create_tables, settings)
    reader = ViewReader(settings.database_url, settings.db_schema)
    await reader.open()
    access = AccessApp(runtime.store, runtime.relay)
    await asyncio.to_thread(_bootstrap, access)
    intake = IntakeApp(runtime.store, runtime.relay)
    intake.direct = _ToExecutor(runtime.bus)
    services = Services(
        intake=intake,
        reader=reader,
        access=access,
        bus=runtime.bus,
        ready=lambda: runtime.bus.nc.is_connected,
        metrics=runtime.metrics_text,
        sessions=PostgresSessions(reader.pool, settings.db_schema),
        sealer=await asyncio.to_thread(Sealer.for_store, runtime.store),
        archives=Archives(
            settings.database_url, settings.db_schema, open_archive(settings.data_dir)
        ),
    )
    await runtime.start_consumer(intake_consumer(runtime, services.intake))
    config = uvicorn.Config(
        create_app(services, settings.trusted_proxies),
        host=settings.http_host,
        port=settings.http_port,
        proxy_headers=False,  # forwarded headers count only from BATON_TRUSTED_PROXIES
        http="auto",  # httptools (a gateway dependency: a C parser) when importable, else h11
        ws="none",  # no WebSocket route: uvicorn loads no WebSocket library (issue 32)
        log_level="warning",
        log_config=None,  # uvicorn's records go through the service's structured handler
        lifespan="off",
    )
    server = QuietServer(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]  # the runtime owns signals
    sockets = [shared_socket(settings)] if settings.http_reuse_port else None
    runtime.spawn(server.serve(sockets), "http")

    async def stop_http() -> None:
        server.exit()
        await asyncio.sleep(0.2)
        await reader.close()

    runtime.on_stop.append(stop_http)
    await runtime.serve_forever()


def shared_socket(settings: Settings) -> socket.socket:
    """The API port, bound so that other gateways of this user may bind it too."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.http_host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((settings.http_host, settings.http_port))
    sock.set_inheritable(True)
    return sock


class _ToExecutor:
    """Requests with a plan, straight to the executor (``Consumer.listen_direct``)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.loop = asyncio.get_running_loop()

    def __call__(self, states: list[bytes]) -> None:
        def schedule() -> None:
            self.loop.create_task(self.now(states)).add_done_callback(_quiet)

        self.loop.call_soon_threadsafe(schedule)

    async def now(self, states: list[bytes]) -> None:
        await self.bus.publish_direct("executor", states)


def _quiet(task: asyncio.Task[None]) -> None:
    """A direct copy lost costs only time: the stream's copy follows."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("direct publish failed: %s", task.exception())
