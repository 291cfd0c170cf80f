"""MCP servers a workspace registered (owned by the executor, which announces the tools).

A server's tools join the deployment's catalogue as ``mcp.<server>.<tool>``. The events hold how
to reach the server (a command or a URL) and its tools as the server listed them; secret headers
and secret environment variables travel sealed (``sealing.py``) and are opened only where the
server is started or called.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from baton_common.contracts.calls import ServiceCall, ServiceReply
from baton_common.events import Event

Json = dict[str, Any]
SideEffectClass = Literal["read", "write", "critical"]


class McpServerRegistered(Event):
    """A server reached, its tools listed and checked: ``tools`` as the server describes them
    (name, description, inputSchema, outputSchema, annotations)."""

    TYPE = "mcp.server_registered"

    name: str
    transport: Literal["stdio", "http"]
    command: list[str] = Field(default_factory=list)
    url: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)  # sealed values
    secret_headers: dict[str, str] = Field(default_factory=dict)  # sealed values
    tools: list[Json] = Field(default_factory=list)
    side_effects: dict[str, SideEffectClass] = Field(default_factory=dict)  # the workspace's
    actor: str | None = None


class McpToolsListed(Event):
    """The server's tools as it lists them now (a refresh, or its ``tools/list_changed``)."""

    TYPE = "mcp.tools_listed"

    tools: list[Json] = Field(default_factory=list)
    reason: str = "refresh"


class McpSideEffectSet(Event):
    """The workspace overrides one tool's side-effect class (None: back to its annotations)."""

    TYPE = "mcp.side_effect_set"

    tool: str
    side_effect: SideEffectClass | None = None
    actor: str | None = None


class McpServerRemoved(Event):
    """The server is forgotten; its tools leave the catalogue."""

    TYPE = "mcp.server_removed"

    actor: str | None = None


def mcp_rpc_subject(root: str) -> str:
    """The executor's MCP registry calls (the gateway's)."""
    return f"{root}_rpc.executor.mcp"


class McpCall(ServiceCall):
    """One operation of the MCP servers API (``server.add``, ``server.list``, …), forwarded by
    the gateway for the caller's workspace."""


class McpReply(ServiceReply):
    """The executor's answer: an HTTP status, a reason when it failed, and a body."""
