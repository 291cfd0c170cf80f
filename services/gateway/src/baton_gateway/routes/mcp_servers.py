"""MCP servers a workspace registers: their tools join the catalogue as ``mcp.<server>.<tool>``.

Each call is forwarded to the executor (which owns the registry and announces the tools) over
NATS request/reply with the caller's workspace: a server is reached and its tools listed and
checked before it is recorded, so a bad one is a 4xx and nothing is kept. Secret headers and
environment variables are sealed by the executor and shown by name only.
"""

from __future__ import annotations

from typing import Literal

from baton_common.contracts import McpCall, McpReply, mcp_rpc_subject
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from baton_gateway.domain import Principal
from baton_gateway.routes.deps import Reader, allowed, services_of
from baton_gateway.routes.rpc import Forward
from baton_gateway.services import Services

router = APIRouter(prefix="/v1/mcp/servers", tags=["mcp"])
Manager = Depends(allowed("manage", "registering MCP servers"))
RPC_TIMEOUT_S = 40.0  # the executor gives a server 15 s to list its tools
SideEffect = Literal["read", "write", "critical"]
Strings = dict[str, str]


class ServerBody(BaseModel):
    """An MCP server: started by ``command`` (stdio) or reached at ``url`` (streamable HTTP)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$", description="tools are mcp.<name>.<tool>")
    transport: Literal["stdio", "http"]
    command: list[str] | None = Field(
        None, min_length=1, max_length=100, description="stdio: the program and its arguments"
    )
    url: str | None = Field(None, pattern=r"^https?://", max_length=2000)
    env: Strings | None = Field(None, description="stdio: environment variables (shown)")
    secret_env: Strings | None = Field(None, description="stdio: sealed, never shown")
    headers: Strings | None = Field(None, description="http: request headers (shown)")
    secret_headers: Strings | None = Field(None, description="http: sealed, never shown")
    side_effects: dict[str, SideEffect] | None = Field(
        None, description="per tool: read, write or critical, instead of its annotations"
    )


class SideEffectBody(BaseModel):
    """A tool's side-effect class in this workspace; null: from its annotations again."""

    model_config = ConfigDict(extra="forbid")
    side_effect: SideEffect | None


call = Forward(mcp_rpc_subject, McpCall, McpReply, "the executor", RPC_TIMEOUT_S)


@router.post("", status_code=201)
async def add_server(
    body: ServerBody, who: Principal = Manager, s: Services = Depends(services_of)
) -> Response:
    """Register a server: it is reached and its tools listed and checked first."""
    return await call(s, who, "server.add", 201, **body.model_dump(exclude_none=True))


@router.get("")
async def list_servers(who: Principal = Reader, s: Services = Depends(services_of)) -> Response:
    return await call(s, who, "server.list", 200)


@router.get("/{server}")
async def get_server(
    server: str, who: Principal = Reader, s: Services = Depends(services_of)
) -> Response:
    """A server by id or name, with its tools as the catalogue offers them."""
    return await call(s, who, "server.get", 200, server=server)


@router.post("/{server}/refresh")
async def refresh_server(
    server: str, who: Principal = Manager, s: Services = Depends(services_of)
) -> Response:
    """List the server's tools again (a server also says so itself: ``tools/list_changed``)."""
    return await call(s, who, "server.refresh", 200, server=server)


@router.put("/{server}/tools/{tool}/side-effect")
async def set_side_effect(
    server: str,
    tool: str,
    body: SideEffectBody,
    who: Principal = Manager,
    s: Services = Depends(services_of),
) -> Response:
    """Override a tool's side-effect class (critical: every call waits for an approval)."""
    fields = {"server": server, "tool": tool, "side_effect": body.side_effect}
    return await call(s, who, "server.side_effect", 200, **fields)


@router.delete("/{server}", status_code=204)
async def remove_server(
    server: str, who: Principal = Manager, s: Services = Depends(services_of)
) -> Response:
    """Forget the server; its tools leave the catalogue."""
    return await call(s, who, "server.remove", 204, server=server)
