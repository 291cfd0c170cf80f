"""The MCP registry: a workspace's servers, kept as McpServer aggregates in the executor's own
``mcp`` store (its relay publishes their events), and their tools as catalogue entries.

Registering reaches the server, lists its tools and checks them before anything is committed:
an unreachable server, one that does not speak MCP, or a tool whose schema is not valid is
refused with the reason, and nothing is recorded. Each change is committed, then the catalogue
is announced again (``extensions.publish_scan``), so planner, gateway and workers see it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias
from uuid import UUID

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.discovery import Scan
from baton_common.egress import EgressGuard
from baton_common.errors import Conflict, NotFound
from baton_common.events import Event
from baton_common.sealing import Sealer
from baton_common.store import Commit, LogFold, MemoryEventStore, PostgresEventStore, run_sync

from baton_executor.mcp.connect import check_command, endpoint_of, list_tools
from baton_executor.mcp.domain import (
    PREFIX,
    SIDE_EFFECTS,
    BadServer,
    McpServer,
    checked_tools,
    server_id,
    spec_of,
)

log = logging.getLogger(__name__)
PAGE = 1000
STORE = "mcp"  # apart from executions: the registry folds its whole log at start
Store: TypeAlias = PostgresEventStore | MemoryEventStore


class McpRegistry(LogFold):
    """Every registered server, folded from the ``mcp`` store; changes committed, then announced."""

    def __init__(self, store: Store, sealer: Sealer, guard: EgressGuard) -> None:
        super().__init__(store, PAGE)
        self.sealer, self.guard = sealer, guard
        self.servers: dict[UUID, McpServer] = {}
        self.lock = asyncio.Lock()
        self.committed: Callable[[list[tuple[int, bytes]]], None] = lambda rows: None
        self.announce: Callable[[], Awaitable[Any]] = _nothing
        self.changed: Callable[[McpServer], None] = lambda server: None  # the watchers'

    # --- reading ---------------------------------------------------------------------------------

    def _fold(self, event: Event) -> None:
        if event.type.startswith("mcp."):
            server = self.servers.setdefault(event.aggregate_id, McpServer(event.aggregate_id))
            server.apply(event)

    def live(self, workspace_id: str | None = None) -> list[McpServer]:
        return sorted(
            (
                s
                for s in self.servers.values()
                if not s.removed and workspace_id in (None, s.workspace_id)
            ),
            key=lambda s: s.name,
        )

    def find(self, workspace_id: str, ref: str) -> McpServer:
        """By id or name, in this workspace (another workspace's is not found)."""
        for server in self.live(workspace_id):
            if ref in (str(server.id), server.name):
                return server
        raise NotFound(f"no MCP server {ref!r} in this workspace")

    def add_to(self, found: Scan) -> None:
        """Every live server's tools into a catalogue scan (a name taken is reported broken)."""
        for server in self.live():
            for spec in server.specs():
                impl = {"mcp": {"server_id": str(server.id), "tool": spec.name.rsplit(".", 1)[1]}}
                found._add(spec, f"mcp:{server.workspace_id}:{server.name}", impl)

    # --- changes ---------------------------------------------------------------------------------

    async def register(self, ws: str, body: dict[str, Any], actor: str | None) -> dict[str, Any]:
        """Reach the server, list and check its tools, then record it (all or nothing)."""
        event = await run_sync(self._registration, ws, body, actor)
        endpoint = await run_sync(endpoint_of, event, self.sealer.unseal)
        tools = checked_tools(event.name, await list_tools(endpoint, self.guard))
        self._check_names(ws, event.name, tools)
        _check_overrides(event.side_effects, tools)
        async with self.lock:
            await run_sync(self.catch_up)
            if any(s.name == event.name for s in self.live(ws)):
                raise Conflict(f"name: an MCP server {event.name!r} is already registered here")
            server = McpServer(event.aggregate_id)
            old = self.servers.get(event.aggregate_id)  # removed earlier: its history goes on
            server.version = old.version if old is not None else 0
            own = set(c.McpServerRegistered.model_fields) - set(Event.model_fields)
            fields = event.model_dump(include=own | {"workspace_id", "actor"})
            server.trigger(c.McpServerRegistered, **{**fields, "tools": tools})
            await self._commit(server)
        return self.find(ws, event.name).view()

    def _registration(self, ws: str, body: dict[str, Any], actor: str | None) -> Any:
        """The event to record, secrets sealed (not yet checked against the server)."""
        transport = body.get("transport")
        name = str(body.get("name") or "")
        if transport == "stdio":
            if body.get("url"):
                raise BadServer("url: a stdio server is started by its command, not reached by URL")
            check_command(list(body.get("command") or []))
        elif transport == "http":
            if not body.get("url") or body.get("command"):
                raise BadServer("url: an http server needs a url (and no command)")
        else:
            raise BadServer(f"transport: {transport!r} is not stdio or http")
        seal = self.sealer.seal
        return c.McpServerRegistered(
            workspace_id=ws,
            aggregate_id=server_id(ws, name),
            name=name,
            transport=transport,
            command=list(body.get("command") or []),
            url=body.get("url"),
            env=dict(body.get("env") or {}),
            headers=dict(body.get("headers") or {}),
            secret_env={k: seal(v) for k, v in (body.get("secret_env") or {}).items()},
            secret_headers={k: seal(v) for k, v in (body.get("secret_headers") or {}).items()},
            side_effects=dict(body.get("side_effects") or {}),
            actor=actor,
        )

    def _check_names(self, ws: str, server: str, tools: list[dict[str, Any]]) -> None:
        """A tool name another source already offers (another workspace's server of the same
        name, a plugin) is refused: the catalogue has one tool per name."""
        mine = {s.id for s in self.live(ws) if s.name == server}
        others = {spec.name for s in self.live() if s.id not in mine for spec in s.specs()} | {
            n for n in DEFAULT_CATALOGUE.names() if not n.startswith(PREFIX)
        }
        for tool in tools:
            name = spec_of(server, tool).name
            if name in others:
                raise Conflict(f"tool {name!r} is already in the catalogue: choose another name")

    async def refresh(self, ws: str, ref: str, reason: str = "refresh") -> dict[str, Any]:
        """List the server's tools again; a change is recorded and announced."""
        await run_sync(self.catch_up)
        server = self.find(ws, ref)
        assert server.registered is not None
        endpoint = await run_sync(endpoint_of, server.registered, self.sealer.unseal)
        tools = checked_tools(server.name, await list_tools(endpoint, self.guard))
        self._check_names(ws, server.name, tools)
        async with self.lock:
            await run_sync(self.catch_up)
            server = self.find(ws, ref)
            if tools != server.tools:
                server.trigger(c.McpToolsListed, workspace_id=ws, tools=tools, reason=reason)
                await self._commit(server)
        return self.find(ws, ref).view()

    async def set_side_effect(
        self, ws: str, ref: str, tool: str, side_effect: str | None, actor: str | None
    ) -> dict[str, Any]:
        if side_effect is not None and side_effect not in SIDE_EFFECTS:
            raise BadServer(f"side_effect: {side_effect!r} is not one of {', '.join(SIDE_EFFECTS)}")
        async with self.lock:
            await run_sync(self.catch_up)
            server = self.find(ws, ref)
            _check_overrides({tool: side_effect or "read"}, server.tools)
            server.trigger(
                c.McpSideEffectSet,
                workspace_id=ws,
                tool=tool,
                side_effect=side_effect,
                actor=actor,
            )
            await self._commit(server)
        return server.view()

    async def remove(self, ws: str, ref: str, actor: str | None) -> None:
        async with self.lock:
            await run_sync(self.catch_up)
            server = self.find(ws, ref)
            server.trigger(c.McpServerRemoved, workspace_id=ws, actor=actor)
            await self._commit(server)

    async def _commit(self, server: McpServer) -> None:
        """Record, fold, then announce the catalogue (a failed announcement is retried by the
        next refresh or start; the record stands)."""
        rows = await run_sync(self.store.commit, Commit(events=server.collect()))
        self.committed(rows)
        await run_sync(self.catch_up)
        self.changed(self.servers[server.id])
        try:
            await self.announce()
        except Exception as exc:
            log.warning(
                "MCP server %s recorded; announcing the catalogue failed: %s", server.id, exc
            )


def _check_overrides(overrides: dict[str, Any], tools: list[dict[str, Any]]) -> None:
    names = {t["name"] for t in tools}
    for tool, side_effect in overrides.items():
        if tool not in names:
            raise BadServer(f"side_effects: the server has no tool {tool!r}")
        if side_effect not in SIDE_EFFECTS:
            raise BadServer(f"side_effects.{tool}: {side_effect!r} is not read, write or critical")


async def _nothing() -> None:
    return None
