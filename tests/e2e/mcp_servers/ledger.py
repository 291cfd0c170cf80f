"""A small MCP server for the tests: ``python ledger.py stdio`` or ``python ledger.py http PORT``.

``LEDGER_DIR`` holds what it did, as files the tests read: ``calls.jsonl`` (one line per call of
``record_payment``, with the idempotency key the client sent in ``_meta``) and ``effects.json``
(the payments carried out, once per key: a repeated key answers the recorded result, the way
payment APIs honour idempotency keys). ``crash_once`` exits the process the first time it is
called (a marker file remembers it), so a client must start the server again.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations

DIR = Path(os.environ.get("LEDGER_DIR", "."))
app = MCPServer("ledger")


def _key(ctx: Context) -> str:
    meta = ctx.request_context.meta or {}
    return str(dict(meta).get("baton/idempotency_key") or "")


def _log(kind: str, key: str, **extra: Any) -> None:
    with (DIR / "calls.jsonl").open("a") as out:
        out.write(json.dumps({"tool": kind, "key": key, "pid": os.getpid(), **extra}) + "\n")


@app.tool()
async def record_payment(payee: str, amount: float, ctx: Context) -> dict[str, Any]:
    """Record a payment to a payee in the ledger (once per idempotency key)."""
    key = _key(ctx)
    _log("record_payment", key)
    effects_file = DIR / "effects.json"
    effects = json.loads(effects_file.read_text()) if effects_file.exists() else {}
    if key and key in effects:
        return dict(effects[key])
    await asyncio.sleep(float(os.environ.get("LEDGER_DELAY_S", "0")))  # a kill lands mid-call
    done = {"payee": payee, "amount": amount, "entry": len(effects) + 1}
    effects[key or f"nokey-{len(effects)}"] = done
    effects_file.write_text(json.dumps(effects))
    return done


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
def weather_forecast(city: str) -> dict[str, Any]:
    """Look up tomorrow's weather forecast (temperature and sky) for a city."""
    return {"city": city, "forecast": "sunny", "celsius": 21}


@app.tool(annotations=ToolAnnotations(destructiveHint=True))
def wipe_account(account: str, ctx: Context) -> dict[str, Any]:
    """Close an account and erase its records for good."""
    _log("wipe_account", _key(ctx))
    return {"wiped": account}


@app.tool(annotations=ToolAnnotations(readOnlyHint=True))
async def count_slowly(to: int, ctx: Context) -> dict[str, Any]:
    """Count up to a number, one a second, reporting progress."""
    try:
        for n in range(1, to + 1):
            await ctx.report_progress(n, to, f"counted {n}")
            await asyncio.sleep(0.3)
    except BaseException:  # the client cancelled the call (notifications/cancelled)
        _log("count_slowly_cancelled", _key(ctx))
        raise
    return {"counted": to}


@app.tool()
async def crash_once(ctx: Context) -> dict[str, Any]:
    """Exit the server the first time it is called; answer after that."""
    marker = DIR / "crashed"
    _log("crash_once", _key(ctx))
    if not marker.exists():
        marker.write_text("1")
        os._exit(3)
    return {"survived": True}


@app.tool()
async def open_vault(ctx: Context) -> dict[str, Any]:
    """Add the vault_balance tool to this server and say the tool list changed."""

    @app.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def vault_balance() -> dict[str, Any]:
        """Read the vault's balance."""
        return {"balance": 1000}

    await ctx.notify_tools_changed()
    with __import__("contextlib").suppress(Exception):
        await ctx.request_context.session.send_tool_list_changed()
    return {"opened": True}


if os.environ.get("LEDGER_BAD_SCHEMA"):  # a tool whose input schema no validator accepts

    @app.tool()
    def broken(n: int) -> dict[str, Any]:
        """A tool that lists a schema that is not one."""
        return {"n": n}

    app._tool_manager.get_tool("broken").parameters = {  # type: ignore[union-attr]
        "type": "object",
        "properties": {"n": {"type": "integer-ish"}},
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        app.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        app.run()
