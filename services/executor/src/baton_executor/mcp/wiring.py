"""The MCP registry in the executor process: its own store and relay, the API server, and a
watcher per server for ``tools/list_changed``."""

from __future__ import annotations

import asyncio
import functools

from baton_common.egress import EgressGuard, parse_allow
from baton_common.relay import Relay
from baton_common.sealing import Sealer
from baton_common.service import Runtime
from baton_common.store import open_store, run_sync

from baton_executor.extensions import publish_scan
from baton_executor.mcp.registry import STORE, McpRegistry
from baton_executor.mcp.rpc import mcp_server
from baton_executor.mcp.watch import Watchers


async def open_mcp(runtime: Runtime, scanned_by: str) -> McpRegistry:
    settings = runtime.settings
    store = await asyncio.to_thread(
        open_store, settings.database_url, STORE, schema=settings.db_schema
    )
    relay = Relay(store, runtime.bus)
    relay.start()
    sealer = await asyncio.to_thread(Sealer.for_store, store)
    registry = McpRegistry(store, sealer, EgressGuard(parse_allow(settings.egress_allow)))
    registry.committed = relay.committed
    registry.announce = functools.partial(publish_scan, runtime.bus, scanned_by, registry.add_to)
    await run_sync(registry.catch_up)
    watchers = Watchers(registry)
    watchers.start()
    await mcp_server(runtime, registry).start()

    async def stop() -> None:
        await watchers.stop()
        await relay.publish_pending()
        await relay.stop()
        store.close()

    runtime.on_stop.append(stop)
    return registry
