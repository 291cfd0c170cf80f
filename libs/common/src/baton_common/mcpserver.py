"""Baton as an MCP server: the tools and resources an MCP client (a coding assistant, a desktop AI
client) uses to plan, start, watch and steer durable work.

Written once for both doors: ``baton mcp serve`` (stdio, calling a gateway over HTTP with an API
key) and the gateway's ``/mcp`` route (streamable HTTP, calling its own routes in process). Each
door hands in a ``Backend``: one JSON call to Baton's HTTP API *as the caller*, so the workspace,
the role and every check are the gateway's own, never a second copy of them here.

Executions are resources (``baton://executions/{id}``). A client told of changes either way:
``subscriptions/listen`` (protocol 2026-07-28) or ``resources/subscribe`` (the handshake era,
which desktop clients speak): both hear ``notifications/resources/updated`` when an execution of
the workspace changes, from the door's ``follow`` (the workspace's live event stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated
from mcp_types import ToolAnnotations
from pydantic import Field

log = logging.getLogger(__name__)

RESOURCE = "baton://executions/{execution_id}"
Status = Literal[
    "requested", "planned", "running", "paused", "cancelling", "compensating",
    "succeeded", "failed", "cancelled",
]  # fmt: skip
INSTRUCTIONS = (
    "Baton runs durable AI workflows. `plan` drafts a plan from words (nothing runs); `run` "
    "starts an execution from words or a plan; `status` and the resource "
    "baton://executions/{id} show it (subscribe to hear when it changes); a step that needs a "
    "person's approval waits until `approve` or `reject`; `cancel` stops an execution."
)


class BatonCallFailed(Exception):
    """Baton answered a call with an error; the message is its reason (``404: no execution …``)."""


class Backend(Protocol):
    """One JSON call to Baton's HTTP API as the caller (``BatonCallFailed`` on a 4xx/5xx)."""

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]: ...


BackendOf = Callable[[Context], Backend]
"""The backend for the request in hand: one for a stdio process, the caller's key over HTTP."""

Follow = Callable[[], AsyncIterator[str]]
"""The ids of the workspace's executions as they change, for as long as the server runs."""


def uri_of(execution_id: str | UUID) -> str:
    return RESOURCE.format(execution_id=execution_id)


def build_server(backend_of: BackendOf, follow: Follow | None = None) -> MCPServer:
    """Baton's MCP server: its tools, its execution resources and, with ``follow``, their
    update notifications."""
    watchers = Watchers()

    @contextlib.asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[dict[str, Any]]:
        task = asyncio.create_task(watchers.relay(follow)) if follow else None
        try:
            yield {}
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    server: MCPServer = MCPServer(
        "baton",
        instructions=INSTRUCTIONS,
        subscriptions=watchers.bus,
        lifespan=lifespan,
        log_level="WARNING",
    )
    _tools(server, backend_of)
    _resources(server, backend_of)
    watchers.serve_legacy(server)
    return server


class Watchers:
    """Who wants to hear of which execution: ``subscriptions/listen`` streams through the SDK's
    bus, ``resources/subscribe`` sessions (handshake-era clients) kept here."""

    def __init__(self) -> None:
        self.bus = InMemorySubscriptionBus()
        self.sessions: dict[str, list[ServerSession]] = {}

    def serve_legacy(self, server: MCPServer) -> None:
        # MCPServer serves only subscriptions/listen; the handshake-era pair is added on its
        # low-level server, which then advertises `resources.subscribe` to those clients.
        low = server._lowlevel_server
        low.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self.on_sub)
        low.add_request_handler(
            "resources/unsubscribe", types.UnsubscribeRequestParams, self.on_unsub
        )

    async def on_sub(
        self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        watching = self.sessions.setdefault(str(params.uri), [])
        if ctx.session not in watching:
            watching.append(ctx.session)
        return types.EmptyResult()

    async def on_unsub(
        self, ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        watching = self.sessions.get(str(params.uri), [])
        if ctx.session in watching:
            watching.remove(ctx.session)
        return types.EmptyResult()

    async def changed(self, execution_id: str) -> None:
        uri = uri_of(execution_id)
        await self.bus.publish(ResourceUpdated(uri=uri))
        for session in list(self.sessions.get(uri, [])):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # the client went away: forget its subscription
                self.sessions[uri].remove(session)

    async def relay(self, follow: Follow) -> None:
        """Tell watchers of every change ``follow`` yields, starting it again if it breaks."""
        pause = 1.0
        while True:
            try:
                async for execution_id in follow():
                    await self.changed(execution_id)
                    pause = 1.0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the gateway restarted, say: follow again, less often
                log.warning("following execution changes failed (%s); again in %gs", exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)


async def _call(
    ctx: Context, backend_of: BackendOf, method: str, path: str, body: Any = None, **params: Any
) -> dict[str, Any]:
    """A call as the caller; Baton's refusal becomes the tool's error, with its reason."""
    clean = {k: v for k, v in params.items() if v is not None}
    try:
        return await backend_of(ctx).call(method, path, body, clean or None)
    except BatonCallFailed as exc:
        raise ToolError(str(exc)) from None


ExecutionId = Annotated[
    UUID, Field(description="the execution's id (from `run` or `list_executions`)")
]
ApprovalId = Annotated[
    UUID,
    Field(description="the gate's id: `pending_approvals[].approval_id` in `status`"),
]
Inputs = Annotated[
    dict[str, Any] | None,
    Field(description="values the plan refers to as ${input.<name>}"),
]
READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
CHANGE = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)


def _tools(server: MCPServer, backend_of: BackendOf) -> None:
    _running_tools(server, backend_of)
    _steering_tools(server, backend_of)


def _running_tools(server: MCPServer, backend_of: BackendOf) -> None:
    @server.tool(annotations=READ)
    async def plan(
        ctx: Context,
        request: Annotated[str, Field(min_length=1, description="what should be done, in words")],
        inputs: Inputs = None,
    ) -> dict[str, Any]:
        """Draft the plan Baton would run for a request in words, with why each step is there.
        Nothing runs; pass the plan to `run` to start it."""
        body = {"request": request, "inputs": inputs or {}}
        return await _call(ctx, backend_of, "POST", "/v1/plans/draft", body)

    @server.tool(annotations=CHANGE)
    async def run(
        ctx: Context,
        request: Annotated[
            str | None,
            Field(description="what should be done, in words (Baton plans it, then runs it)"),
        ] = None,
        plan: Annotated[
            dict[str, Any] | None,
            Field(
                description="a plan to run as given: {steps: [{id, tool, input, depends_on, "
                "requires_approval, ...}]} (e.g. the `plan` tool's answer)"
            ),
        ] = None,
        inputs: Inputs = None,
        idempotency_key: Annotated[
            str | None,
            Field(description="the same key twice starts one execution, not two"),
        ] = None,
    ) -> dict[str, Any]:
        """Start an execution from a request in words or a plan (give exactly one). Answers its
        id at once; follow it with `status` or the resource baton://executions/{id}."""
        body = {"request": request, "plan": plan, "inputs": inputs or {}}
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        started = await _call(ctx, backend_of, "POST", "/v1/executions", body)
        return {
            "id": started["id"],
            "status": started["status"],
            "created": started["created"],
            "resource": uri_of(started["id"]),
        }

    @server.tool(annotations=READ)
    async def status(ctx: Context, execution_id: ExecutionId) -> dict[str, Any]:
        """An execution's status, its steps and their outputs, and the approvals it waits for
        (`pending_approvals`: decide them with `approve` or `reject`)."""
        view = await _call(ctx, backend_of, "GET", f"/v1/executions/{execution_id}")
        return summary(view)

    @server.tool(annotations=READ)
    async def list_executions(
        ctx: Context,
        status: Annotated[
            Status | None, Field(description="only executions in this status")
        ] = None,
        query: Annotated[
            str | None, Field(max_length=200, description="words in the request")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=500, description="at most this many")] = 20,
    ) -> dict[str, Any]:
        """The workspace's executions, newest first: id, status, request, plan, times."""
        found = await _call(
            ctx, backend_of, "GET", "/v1/executions", status=status, q=query, limit=limit
        )
        return {"items": found["items"], "next_before": found.get("next_before")}


def _steering_tools(server: MCPServer, backend_of: BackendOf) -> None:
    @server.tool(annotations=CHANGE)
    async def approve(
        ctx: Context,
        approval_id: ApprovalId,
        comment: Annotated[str | None, Field(max_length=5000, description="why")] = None,
    ) -> dict[str, Any]:
        """Approve a gate: the step that waits for it runs. Needs a key whose role may approve."""
        return await _decide(ctx, backend_of, approval_id, "approve", comment)

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, open_world_hint=True))
    async def reject(
        ctx: Context,
        approval_id: ApprovalId,
        reason: Annotated[str, Field(min_length=1, max_length=5000, description="why not")],
    ) -> dict[str, Any]:
        """Reject a gate: the step does not run (its plan's alternatives or compensations
        follow). Needs a key whose role may approve."""
        return await _decide(ctx, backend_of, approval_id, "reject", reason)

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, open_world_hint=True))
    async def cancel(
        ctx: Context,
        execution_id: ExecutionId,
        reason: Annotated[str | None, Field(max_length=2000, description="why")] = None,
    ) -> dict[str, Any]:
        """Cancel an execution: running steps stop, done ones are compensated."""
        path = f"/v1/executions/{execution_id}/cancel"
        return await _call(ctx, backend_of, "POST", path, {"reason": reason})


async def _decide(
    ctx: Context, backend_of: BackendOf, approval_id: UUID, decision: str, comment: str | None
) -> dict[str, Any]:
    body = {"decision": decision, "comment": comment}
    return await _call(ctx, backend_of, "POST", f"/v1/approvals/{approval_id}/decision", body)


def _resources(server: MCPServer, backend_of: BackendOf) -> None:
    @server.resource(
        RESOURCE,
        name="execution",
        description="An execution: its status, steps, outputs and pending approvals (JSON). "
        "Subscribe to hear when it changes.",
        mime_type="application/json",
    )
    async def execution(execution_id: str, ctx: Context) -> str:
        try:
            UUID(execution_id)
            view = await backend_of(ctx).call("GET", f"/v1/executions/{execution_id}")
        except ValueError:
            raise ResourceError(f"no execution {execution_id}: not an execution id") from None
        except BatonCallFailed as exc:
            raise ResourceError(str(exc)) from None
        return json.dumps(summary(view), ensure_ascii=False)


def summary(view: dict[str, Any]) -> dict[str, Any]:
    """The execution's view as a client reads it, with the gates it waits for in one list."""
    pending = []
    review = view.get("plan_review") or {}
    if review.get("status") == "pending":
        pending.append(
            {"approval_id": review["id"], "step": "(the plan)", "message": review.get("message")}
        )
    for step_id, step in (view.get("steps") or {}).items():
        gate = step.get("approval") or {}
        if gate.get("status") == "pending":
            pending.append(
                {
                    "approval_id": gate["id"],
                    "step": step_id,
                    "tool": step.get("tool"),
                    "input": gate.get("input"),
                    "message": gate.get("message"),
                }
            )
    return {**view, "pending_approvals": pending}
