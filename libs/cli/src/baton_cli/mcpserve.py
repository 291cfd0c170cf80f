"""``baton mcp serve``: Baton as an MCP server over stdio, for a desktop AI client or a coding
assistant that starts it as a subprocess.

It talks to a running gateway over HTTP with the CLI's usual client settings (``--url`` /
``$BATON_URL`` / the running ``baton up``, and ``$BATON_API_KEY`` or the owner key), so the key
decides the workspace and what the client may do. The tools and resources are
``baton_common.mcpserver``'s, the same the gateway serves on ``/mcp``.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from baton_common.mcpserver import BatonCallFailed, build_server

from baton_cli.client import StreamLost, call_async, events_async, gateway_url
from baton_cli.errors import CliError


class GatewayOverHttp:
    """The ``Backend`` of a stdio server: the gateway at ``url``, called with the CLI's key."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: str | None = None  # the last event of the live stream seen

    async def call(
        self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            return await call_async(method, self.url, path, body, params)
        except CliError as exc:
            raise BatonCallFailed(str(exc)) from None

    async def changes(self) -> AsyncIterator[str]:
        """The workspace's changed executions, from the gateway's live stream (``/v1/stream``),
        resumed after the last event seen when it is followed again after a break."""
        try:
            async for event in events_async(self.url, "/v1/stream", self.seen):
                self.seen = event.id or self.seen
                if execution_id := json.loads(event.data).get("execution_id"):
                    yield str(execution_id)
        except StreamLost as exc:
            raise ConnectionError(f"the gateway's event stream broke off: {exc}") from None


def serve(args: argparse.Namespace) -> int:
    # stdout is the protocol's channel: the SDK's own log goes to stderr, warnings only
    logging.basicConfig(level=logging.WARNING)
    backend = GatewayOverHttp(gateway_url(args.url))
    build_server(lambda _ctx: backend, backend.changes).run()
    return 0


def add_mcp_serve_command(actions: Any) -> argparse.ArgumentParser:
    """``serve`` under ``baton mcp`` (``actions``: that group's subparsers)."""
    p = actions.add_parser(
        "serve",
        help="serve Baton to an MCP client over stdio (tools: plan, run, status, "
        "list_executions, approve, reject, cancel; executions as resources)",
    )
    p.add_argument("--url", help="gateway URL (default: the running `baton up`, or $BATON_URL)")
    p.set_defaults(fn=serve)
    return p
