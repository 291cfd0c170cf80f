"""An MCP server's tool as a worker runs it: ``mcp.<server>.<tool>``.

The catalogue names the server by id only; the worker reads how to reach it from the registry's
store (secrets opened here, right before use) and checks the server belongs to the step's
workspace. Each call carries the step's idempotency key in ``_meta`` (``baton/idempotency_key``),
reports the server's progress into the step's live log, and is cancelled on the server
(``notifications/cancelled``) when the step times out or its execution is cancelled.

MCP has no idempotency contract, so an attempt whose outcome is unknown (the server died
mid-call, or the worker running it was lost) is retried by side-effect class: a read always,
a write under the same key (a server that honours it does the work once), a critical call
never blindly: the step fails saying the outcome is unknown, for a person to check.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeAlias, cast
from uuid import UUID

from baton_common.catalogue import ToolSpec
from baton_common.sealing import Sealer
from baton_common.settings import Settings
from baton_common.store import MemoryEventStore, PostgresEventStore, open_store

from baton_executor.mcp.connect import IDEMPOTENCY_META, Endpoint, endpoint_of
from baton_executor.mcp.domain import McpServer
from baton_executor.mcp.pool import Session, SessionPool
from baton_executor.mcp.registry import STORE
from baton_executor.tools.base import ToolContext, ToolError

if TYPE_CHECKING:  # the SDK loads with the first MCP call, not in every worker
    from mcp import types

Store: TypeAlias = PostgresEventStore | MemoryEventStore


class Registrations:
    """The registry's store as a worker reads it (opened at the first MCP call): a server's
    record by id, and the sealer that opens its secrets."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._opened: tuple[Store, Sealer] | None = None

    def _open(self) -> tuple[Store, Sealer]:
        if self._opened is None:
            s = self.settings
            store = open_store(s.database_url, STORE, schema=s.db_schema)
            self._opened = (store, Sealer.for_store(store))
        return self._opened

    async def server(self, sid: UUID) -> McpServer | None:
        store, _ = await asyncio.to_thread(self._open)
        history = await asyncio.to_thread(store.load, sid)
        server = McpServer.rebuild(sid, history)
        return None if server is None or server.removed else server

    async def endpoint(self, server: McpServer) -> Endpoint:
        assert server.registered is not None
        _, sealer = await asyncio.to_thread(self._open)
        return await asyncio.to_thread(endpoint_of, server.registered, sealer.unseal)


class McpTools:
    """What a worker needs to build MCP tools: its session pool and the registry's store."""

    def __init__(self, settings: Settings) -> None:
        self.pool = SessionPool()
        self.registrations = Registrations(settings)

    def build(self, spec: ToolSpec, impl: dict[str, Any]) -> McpTool:
        return McpTool(
            spec, str(impl["server_id"]), str(impl["tool"]), self.pool, self.registrations
        )


class McpTool:
    """One MCP tool, called over the worker's pool of sessions to its server."""

    def __init__(
        self, spec: ToolSpec, server_id: str, tool: str, pool: SessionPool, reg: Registrations
    ) -> None:
        self.spec, self.server_id, self.tool, self.pool, self.reg = (
            spec,
            UUID(server_id),
            tool,
            pool,
            reg,
        )

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> Any:
        if ctx.deliveries > 1 and self.spec.side_effect == "critical":
            raise ToolError(
                unknown(self.spec.name, "the worker running it was lost"), retryable=False
            )
        server = await self.reg.server(self.server_id)
        if server is None or server.workspace_id != ctx.workspace_id:
            raise ToolError(
                f"{self.spec.name}: no such MCP server in this workspace", retryable=False
            )
        endpoint = await self.reg.endpoint(server)
        try:
            async with self.pool.session(
                (server.id, server.version), endpoint, ctx.egress
            ) as session:
                return await self._call(session, input, ctx)
        except (ConnectionError, OSError, TimeoutError) as exc:  # the session could not open
            raise ToolError(f"{self.spec.name}: server unreachable: {exc}") from None

    async def _call(self, session: Session, input: dict[str, Any], ctx: ToolContext) -> Any:
        async def progress(progress: float, total: float | None, message: str | None) -> None:
            of = f"/{total:g}" if total else ""
            ctx.log.info("progress %g%s%s", progress, of, f": {message}" if message else "")

        assert session.client is not None
        call = session.client.call_tool(
            self.tool,
            input,
            progress_callback=progress,
            meta=cast(Any, {IDEMPOTENCY_META: ctx.idempotency_key}),
        )
        try:
            result = await _unless_cancelled(call, ctx)
        except (asyncio.CancelledError, TimeoutError, ToolError):
            raise  # the SDK told the server (notifications/cancelled) as the call was abandoned
        except Exception as exc:  # the connection went: the outcome is not known
            await self.pool.discard(session)
            raise self._unknown(exc) from None
        return self._output(result)

    def _unknown(self, exc: BaseException) -> ToolError:
        """Retry by side-effect class: never blindly for a critical tool."""
        what = f"the server stopped answering ({type(exc).__name__}: {exc})"
        if self.spec.side_effect == "critical":
            return ToolError(unknown(self.spec.name, what), retryable=False)
        return ToolError(f"{self.spec.name}: {what}; it will be started again", retryable=True)

    def _output(self, result: types.CallToolResult) -> Any:
        from mcp import types

        text = "\n".join(b.text for b in result.content if isinstance(b, types.TextContent))
        if result.is_error:
            raise ToolError(
                f"{self.spec.name}: the tool answered an error: {text[:500]}", retryable=False
            )
        if result.structured_content is not None:
            return result.structured_content
        return {"text": text, "content": [b.model_dump(mode="json") for b in result.content]}


def unknown(tool: str, what: str) -> str:
    return (
        f"{tool}: outcome unknown, {what}; a critical tool is not called again blindly: check "
        "the server, then rerun the step"
    )


async def _unless_cancelled(call: Any, ctx: ToolContext) -> types.CallToolResult:
    """The call's result; ``ToolError`` as soon as the step's execution is cancelled (the call
    task is cancelled, which sends ``notifications/cancelled``)."""
    if ctx.cancelled is None:
        return await call  # type: ignore[no-any-return]
    running = asyncio.ensure_future(call)
    stop = asyncio.ensure_future(ctx.cancelled.wait())
    try:
        await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # a timeout cancels this task: the call is abandoned with it
        stop.cancel()
        if not running.done():
            running.cancel()
    if running.cancelled():
        raise ToolError("cancelled with its execution (the server was told)", retryable=False)
    return running.result()  # type: ignore[no-any-return]
