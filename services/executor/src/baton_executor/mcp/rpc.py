"""The MCP servers API over NATS request/reply (the kit's server, queue group ``executor``):
the gateway forwards each call with the caller's workspace; a change is committed (and the
catalogue announced) before it is answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from baton_common.contracts import McpCall, McpReply, mcp_rpc_subject
from baton_common.kit.rpc import CallServer
from baton_common.service import Runtime
from baton_common.store import run_sync

from baton_executor.mcp.domain import BadServer
from baton_executor.mcp.registry import McpRegistry

Op = Callable[[McpRegistry, McpCall], Awaitable[tuple[int, Any]]]


def _ref(call: McpCall) -> str:
    ref = call.body.get("server")
    if not ref:
        raise BadServer("server: which server (its id or name)")
    return str(ref)


async def _add(r: McpRegistry, call: McpCall) -> tuple[int, Any]:
    return 201, await r.register(call.workspace_id, call.body, call.actor)


async def _list(r: McpRegistry, call: McpCall) -> tuple[int, Any]:
    await run_sync(r.catch_up)
    return 200, {"items": [s.view() for s in r.live(call.workspace_id)]}


async def _get(r: McpRegistry, call: McpCall) -> tuple[int, Any]:
    await run_sync(r.catch_up)
    return 200, r.find(call.workspace_id, _ref(call)).view()


async def _refresh(r: McpRegistry, call: McpCall) -> tuple[int, Any]:
    return 200, await r.refresh(call.workspace_id, _ref(call))


async def _side_effect(r: McpRegistry, call: McpCall) -> tuple[int, Any]:
    tool, side_effect = str(call.body.get("tool") or ""), call.body.get("side_effect")
    return 200, await r.set_side_effect(
        call.workspace_id, _ref(call), tool, side_effect, call.actor
    )


async def _remove(r: McpRegistry, call: McpCall) -> tuple[int, Any]:
    await r.remove(call.workspace_id, _ref(call), call.actor)
    return 204, None


OPS: dict[str, Op] = {
    "server.add": _add,
    "server.list": _list,
    "server.get": _get,
    "server.refresh": _refresh,
    "server.side_effect": _side_effect,
    "server.remove": _remove,
}


def mcp_server(runtime: Runtime, registry: McpRegistry) -> CallServer[McpCall, McpReply]:
    """Answers the gateway's MCP registry calls for this process."""
    subject = mcp_rpc_subject(runtime.settings.subject_root)
    handlers = {verb: _answering(registry, op) for verb, op in OPS.items()}
    return CallServer(runtime, "executor", subject, McpCall, McpReply, handlers, span="mcp")


def _answering(registry: McpRegistry, op: Op) -> Callable[[McpCall], Awaitable[McpReply]]:
    async def handle(call: McpCall) -> McpReply:
        status, body = await op(registry, call)
        return McpReply(status=status, body=body)

    return handle
