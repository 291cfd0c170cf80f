"""``/mcp``: Baton as an MCP server over streamable HTTP (the tools and resources of
``baton_common.mcpserver``, the same ``baton mcp serve`` offers over stdio).

Authenticated with an API key like every route: no key (or a bad one) is a 401 before the MCP
SDK sees the request. Each tool call is one call of the gateway's own routes, in process (ASGI),
as the caller's key: the workspace, the role (a viewer cannot approve) and every check are
those routes', not a second copy. A session belongs to the key that opened it (the SDK answers
404 to another key), and each workspace has its own server, so change notifications never
cross workspaces.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from baton_gateway.domain import GatewayError, Principal, Unauthorized, Unavailable
from baton_gateway.routes.deps import bearer, caller
from baton_gateway.routes.live import workspace_rows
from baton_gateway.services import Services

if TYPE_CHECKING:  # the MCP SDK (~28 MB) loads with the first request to /mcp (issue 32)
    from mcp.server.mcpserver import Context, MCPServer

PATH = "/mcp"


class InProcess:
    """The ``Backend`` of ``/mcp``: the gateway's routes, called in process with the caller's
    key (and address, which the key's failure throttles count)."""

    def __init__(self, app: FastAPI, request: Request) -> None:
        client = request.client
        self.transport = httpx.ASGITransport(
            app=app, client=(client.host, client.port) if client else ("127.0.0.1", 0)
        )
        self.headers = {"Authorization": request.headers.get("authorization", "")}

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        from baton_common.mcpserver import BatonCallFailed

        async with httpx.AsyncClient(
            transport=self.transport, base_url="http://gateway", headers=self.headers
        ) as http:
            resp = await http.request(method, path, json=body, params=params)
        if resp.status_code >= 400:
            raise BatonCallFailed(f"{resp.status_code}: {_detail(resp)}")
        return dict(resp.json()) if resp.content else {}


def _detail(resp: httpx.Response) -> Any:
    try:
        return resp.json().get("detail")
    except ValueError:
        return resp.text


class McpDoor:
    """The ASGI app behind ``/mcp``: authenticate, then hand over to the workspace's server."""

    def __init__(self, app: FastAPI, services: Services) -> None:
        self.app = app
        self.services = services
        self.hosts: dict[str, WorkspaceHost] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
        from mcp.server.auth.provider import AccessToken

        request = Request(scope, receive)
        try:
            who = await _principal(request)
            host = await self.host(who.workspace_id)
        except GatewayError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            await JSONResponse({"detail": str(exc)}, exc.status, headers)(scope, receive, send)
            return
        # the SDK binds a session to the credential that opened it
        scope["user"] = AuthenticatedUser(
            AccessToken(token=_digest(request), client_id=_client_id(who), scopes=[who.role])
        )
        await host.manager.handle_request(scope, receive, send)

    async def host(self, workspace_id: str) -> WorkspaceHost:
        host = self.hosts.get(workspace_id)
        if host is None or host.task.done():  # a host that stopped is started again
            host = self.hosts[workspace_id] = WorkspaceHost(self, workspace_id)
        ready = asyncio.create_task(host.ready.wait())
        await asyncio.wait([ready, host.task], return_when=asyncio.FIRST_COMPLETED)
        if not host.ready.is_set():
            ready.cancel()
            raise Unavailable("the MCP server could not start; try again")
        return host

    def backend_of(self, ctx: Context) -> InProcess:
        request = ctx.request_context.request
        assert isinstance(request, Request), "/mcp serves HTTP requests only"
        return InProcess(self.app, request)

    async def changes(self, workspace_id: str) -> AsyncIterator[str]:
        """The workspace's executions as they change, from now on."""
        s = self.services

        async def going() -> bool:
            return True

        async for row in workspace_rows(s, workspace_id, await s.reader.last_seq(), going):
            yield str(row["execution_id"])


class WorkspaceHost:
    """One workspace's MCP server and its streamable HTTP sessions, running in a task of their
    own for as long as the gateway runs."""

    def __init__(self, door: McpDoor, workspace_id: str) -> None:
        from baton_common.mcpserver import build_server
        from mcp.server.transport_security import TransportSecuritySettings

        self.server: MCPServer = build_server(door.backend_of, lambda: door.changes(workspace_id))
        # every request carries an API key: a page that rebinds a name to the gateway cannot
        # add one, so the Host header need not be pinned to a name
        self.server.streamable_http_app(
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False)
        )
        self.manager = self.server.session_manager
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        async with self.manager.run():
            self.ready.set()
            await asyncio.Event().wait()  # until the gateway stops


async def _principal(request: Request) -> Principal:
    credentials = await bearer(request)
    if credentials is None:
        raise Unauthorized("missing API key: send Authorization: Bearer <key>")
    return await caller(request, credentials)


def _digest(request: Request) -> str:
    return hashlib.sha256(request.headers.get("authorization", "").encode()).hexdigest()


def _client_id(who: Principal) -> str:
    return json.dumps([who.workspace_id, str(who.key_id or who.name)])


def mount(app: FastAPI, services: Services) -> None:
    """``/mcp`` on ``app`` (GET, POST and DELETE: the transport's three verbs)."""
    # a Starlette route: its endpoint is an ASGI app (the SDK's transport answers), not a view
    app.router.routes.append(Route(PATH, McpDoor(app, services), methods=["GET", "POST", "DELETE"]))
