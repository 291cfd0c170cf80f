"""Reaching an MCP server with the official SDK: over stdio (a command this host starts) or
streamable HTTP (a URL, through the egress guard). The registry lists tools with it; workers
keep sessions open with it (``pool.py``).

A stdio server runs a command on the executor's and the workers' hosts, so only a command the
operator listed in ``BATON_MCP_COMMANDS`` may be registered: a workspace key must not be able to
run anything it likes on the installation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from baton_common import contracts as c
from baton_common.egress import EgressGuard, EgressRefused, guarded_httpx2

from baton_executor.mcp.domain import BadServer

if TYPE_CHECKING:  # the SDK (~28 MB) loads with the first connection, not in every executor
    from mcp import Client

log = logging.getLogger(__name__)
COMMANDS_SETTING = "BATON_MCP_COMMANDS"
LIST_TIMEOUT_S = 15.0
IDEMPOTENCY_META = "baton/idempotency_key"  # the step's key, in every tools/call's _meta


@dataclass(frozen=True)
class Endpoint:
    """How to reach one server, its secrets opened (never stored like this)."""

    transport: str
    command: tuple[str, ...] = ()
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def endpoint_of(event: c.McpServerRegistered, unseal: Callable[[str], str]) -> Endpoint:
    return Endpoint(
        transport=event.transport,
        command=tuple(event.command),
        url=event.url,
        env={**event.env, **{k: unseal(v) for k, v in event.secret_env.items()}},
        headers={**event.headers, **{k: unseal(v) for k, v in event.secret_headers.items()}},
    )


def allowed_commands() -> frozenset[str]:
    raw = os.environ.get(COMMANDS_SETTING) or ""
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


def check_command(command: list[str]) -> None:
    """``BadServer`` unless the command's program is on the operator's list (by the name or
    the path given, or the path it resolves to)."""
    if not command or not command[0].strip():
        raise BadServer('command: a stdio server needs a command, e.g. ["npx", "server"]')
    program = command[0]
    allowed = allowed_commands()
    resolved = shutil.which(program)
    if not allowed & {program, resolved, os.path.basename(program)} - {None}:
        listed = ", ".join(sorted(allowed)) or "nothing"
        raise BadServer(
            f"command: {program!r} is not on this installation's {COMMANDS_SETTING} list "
            f"(it allows {listed}); an operator adds the programs MCP servers may run",
            status=403,
        )


@contextlib.asynccontextmanager
async def connected(
    endpoint: Endpoint,
    guard: EgressGuard,
    *,
    on_message: Any = None,
    timeout_s: float | None = None,
) -> AsyncIterator[Client]:
    """An initialised client session; closed (the stdio process ended) on leaving."""
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import get_default_environment, stdio_client
    from mcp.client.streamable_http import streamable_http_client

    async with contextlib.AsyncExitStack() as stack:
        if endpoint.transport == "stdio":
            params = StdioServerParameters(
                command=endpoint.command[0],
                args=list(endpoint.command[1:]),
                env={**get_default_environment(), **endpoint.env},
            )
            errlog = stack.enter_context(_logged_stderr(endpoint.command[0]))
            server: Any = stdio_client(params, errlog=errlog)
        else:
            assert endpoint.url is not None
            await guard.check_url(endpoint.url)  # a refused URL says so before any connection
            http = await stack.enter_async_context(
                guarded_httpx2(guard, headers=endpoint.headers, timeout=timeout_s or 30.0)
            )
            server = streamable_http_client(endpoint.url, http_client=http)
        client = Client(
            server, message_handler=on_message, read_timeout_seconds=timeout_s, cache=None
        )
        yield await stack.enter_async_context(client)


@contextlib.contextmanager
def _logged_stderr(program: str) -> Any:
    """A pipe for a stdio server's stderr: each line it writes becomes a record of this
    process's log (JSON like every other), not raw text in the middle of it."""
    read_fd, write_fd = os.pipe()
    name = os.path.basename(program)

    def relay() -> None:
        with os.fdopen(read_fd, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if line.strip():
                    log.warning("MCP server %s (stderr): %s", name, line.rstrip())

    threading.Thread(target=relay, name=f"mcp-stderr-{name}", daemon=True).start()
    writer = os.fdopen(write_fd, "w")
    try:
        yield writer
    finally:
        writer.close()  # the server's own copy ends with it: then the relay reads to the end


async def listed_tools(client: Client) -> list[dict[str, Any]]:
    """Every tool the server lists (all pages), as plain JSON (camelCase, as on the wire)."""
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = await client.list_tools(cursor=cursor)
        tools += [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in page.tools]
        cursor = page.next_cursor
        if not cursor:
            return tools


async def list_tools(endpoint: Endpoint, guard: EgressGuard) -> list[dict[str, Any]]:
    """The server's tools, or ``BadServer`` saying why it could not be used."""
    where = endpoint.url or " ".join(endpoint.command)
    try:
        async with asyncio.timeout(LIST_TIMEOUT_S):
            async with connected(endpoint, guard, timeout_s=LIST_TIMEOUT_S) as client:
                return await listed_tools(client)
    except EgressRefused as exc:
        raise BadServer(f"url: {exc}", status=403) from None
    except TimeoutError:
        raise BadServer(
            f"{where}: no MCP answer within {LIST_TIMEOUT_S:g}s (is it an MCP server, on this "
            "transport?)"
        ) from None
    except Exception as exc:  # the SDK's, the transport's, the process's: all say "cannot use it"
        raise BadServer(f"{where}: {why(exc)}") from None


def why(exc: BaseException) -> str:
    """A failure in words: the innermost cause of an exception group (anyio wraps them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, OSError | ConnectionError) or "Connect" in type(exc).__name__:
        return f"unreachable ({type(exc).__name__}: {exc})"[:500]
    return f"does not answer as an MCP server ({type(exc).__name__}: {exc})"[:500]
