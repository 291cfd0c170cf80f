"""``tools/list_changed``: the executor keeps one session open per registered server, listening
for it, and refreshes that server's tools when it comes (``baton mcp servers refresh`` without
anyone asking). A server that cannot be reached is tried again later; a removed one is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

from baton_executor.mcp.connect import connected, endpoint_of
from baton_executor.mcp.domain import McpServer
from baton_executor.mcp.registry import McpRegistry

log = logging.getLogger(__name__)
RETRY_S = (1.0, 2.0, 5.0, 15.0, 30.0)


class Watchers:
    """A listening session per live server, started and stopped as servers come and go."""

    def __init__(self, registry: McpRegistry) -> None:
        self.registry = registry
        self.tasks: dict[UUID, asyncio.Task[None]] = {}
        registry.changed = self.follow

    def start(self) -> None:
        for server in self.registry.live():
            self.follow(server)

    def follow(self, server: McpServer) -> None:
        """Watch a live server (once); stop watching a removed one."""
        task = self.tasks.get(server.id)
        if server.removed:
            if task is not None:
                task.cancel()
                del self.tasks[server.id]
            return
        if task is None or task.done():
            self.tasks[server.id] = asyncio.create_task(self._watch(server.id))

    async def stop(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(BaseException):
                await task

    async def _watch(self, sid: UUID) -> None:
        failures = 0
        while not self.registry.servers[sid].removed:
            try:
                await self._listen(self.registry.servers[sid])
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # down, or gone: try again, less and less often
                log.info("MCP server %s: not listening for tool changes now: %s", sid, exc)
            await asyncio.sleep(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    async def _listen(self, server: McpServer) -> None:
        """Until the session ends: each change refreshes the server's tools. A server on the
        2026 protocol sends changes on a ``subscriptions/listen`` stream; an older one sends
        the notification on its own."""
        from mcp import types  # the SDK loads with the first server, not in every executor
        from mcp.client.subscriptions import ListenNotSupportedError

        assert server.registered is not None
        endpoint = endpoint_of(server.registered, self.registry.sealer.unseal)
        changed = asyncio.Event()

        async def on_message(message: Any) -> None:
            if isinstance(message, types.ToolListChangedNotification):
                changed.set()

        async with connected(endpoint, self.registry.guard, on_message=on_message) as client:
            try:
                async with client.listen(tools_list_changed=True) as events:
                    async for _ in events:
                        await self._refresh(server)
                return
            except ListenNotSupportedError:
                pass
            while True:
                await changed.wait()
                changed.clear()
                await self._refresh(server)

    async def _refresh(self, server: McpServer) -> None:
        try:
            await self.registry.refresh(server.workspace_id, str(server.id), "list_changed")
        except Exception as exc:  # a listing that no longer checks out keeps the last tools
            log.warning(
                "MCP server %s: tools changed but could not be refreshed: %s", server.name, exc
            )
