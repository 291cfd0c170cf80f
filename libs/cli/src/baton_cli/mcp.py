"""``baton mcp …``: the Model Context Protocol. ``baton mcp servers add|list|show|refresh|
remove|side-effect`` registers MCP servers whose tools plans then call as ``mcp.<server>.<tool>``.

A secret value (``--secret-header``, ``--secret-env``) may be given as ``env:NAME`` to read it
from this shell's environment variable ``NAME``, so it shows in no process list or history.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from typing import Any
from urllib.parse import quote

from baton_cli.client import call, gateway_url
from baton_cli.errors import CliError


def _api(args: argparse.Namespace, method: str, path: str = "", body: Any = None) -> Any:
    return call(method, gateway_url(args.url), f"/v1/mcp/servers{path}", body)


def _pairs(values: list[str] | None, flag: str, secret: bool = False) -> dict[str, str] | None:
    """``NAME=VALUE`` flags as a mapping; a secret's ``env:VAR`` is read from the environment."""
    if not values:
        return None
    found: dict[str, str] = {}
    for raw in values:
        name, sep, value = raw.partition("=")
        if not sep or not name:
            raise CliError(f"{flag}: expected NAME=VALUE, not {raw!r}")
        if secret and value.startswith("env:"):
            var = value.removeprefix("env:")
            if var not in os.environ:
                raise CliError(f"{flag} {name}: the environment variable {var} is not set")
            value = os.environ[var]
        found[name] = value
    return found


def _show(args: argparse.Namespace, server: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(server, indent=2))
        return
    where = server["url"] or " ".join(server["command"] or [])
    print(f"{server['name']}  ({server['transport']}: {where})  id {server['id']}")
    for name in ("secret_env", "secret_headers"):
        if server.get(name):
            print(f"  {name}: {', '.join(server[name])} (sealed)")
    for tool in server["tools"]:
        print(f"  {tool['name']:<40} {tool['side_effect']:<9} {tool['description'][:60]}")


def add(args: argparse.Namespace) -> int:
    command = shlex.split(args.command) if args.command else None
    body = {
        "name": args.name,
        "transport": "http" if args.url_of_server else "stdio",
        "command": command,
        "url": args.url_of_server,
        "env": _pairs(args.env, "--env"),
        "secret_env": _pairs(args.secret_env, "--secret-env", secret=True),
        "headers": _pairs(args.header, "--header"),
        "secret_headers": _pairs(args.secret_header, "--secret-header", secret=True),
        "side_effects": _pairs(args.side_effect, "--side-effect"),
    }
    if not args.command and not args.url_of_server:
        raise CliError("say how to reach the server: --command 'PROGRAM ARGS…' or --server-url URL")
    _show(args, _api(args, "POST", "", {k: v for k, v in body.items() if v is not None}))
    return 0


def list_servers(args: argparse.Namespace) -> int:
    items = _api(args, "GET")["items"]
    if args.json:
        print(json.dumps(items, indent=2))
    for s in [] if args.json else items:
        where = s["url"] or " ".join(s["command"] or [])
        print(f"{s['id']}  {s['name']:<20} {s['transport']:<6} {len(s['tools']):>3} tools  {where}")
    if not items and not args.json:
        print("no MCP servers (add one: baton mcp servers add NAME --command '…')")
    return 0


def _at(args: argparse.Namespace, *more: str) -> str:
    """The path of the server ``args.server`` names (its name or id), and of what is under it."""
    return "".join(f"/{quote(part, safe='')}" for part in (args.server, *more))


def show(args: argparse.Namespace) -> int:
    _show(args, _api(args, "GET", _at(args)))
    return 0


def refresh(args: argparse.Namespace) -> int:
    _show(args, _api(args, "POST", _at(args, "refresh")))
    return 0


def remove(args: argparse.Namespace) -> int:
    _api(args, "DELETE", _at(args))
    print(f"removed {args.server}; its tools left the catalogue")
    return 0


def side_effect(args: argparse.Namespace) -> int:
    value = None if args.side_effect == "auto" else args.side_effect
    _show(
        args,
        _api(args, "PUT", _at(args, "tools", args.tool, "side-effect"), {"side_effect": value}),
    )
    return 0


def _servers_help(args: argparse.Namespace) -> int:
    return list_servers(args)


def add_mcp_commands(sub: Any) -> list[argparse.ArgumentParser]:
    """The ``baton mcp`` group; returns the parsers that take ``--url`` (the gateway's).
    More verbs of the group (``serve``) are added to ``actions`` here."""
    group = sub.add_parser(
        "mcp", help="Model Context Protocol: MCP servers' tools in plans; Baton as an MCP server"
    )
    actions = group.add_subparsers(dest="mcp_action", required=True)
    servers = actions.add_parser("servers", help="register the MCP servers plans may call")
    servers.set_defaults(fn=_servers_help, json=False)
    verbs = servers.add_subparsers(dest="servers_action")
    a = verbs.add_parser(
        "add",
        help="register a server (stdio: --command '…'; http: --server-url URL)",
        description="The server is reached and its tools listed and checked before it is kept.",
    )
    a.add_argument("name", help="tools are called mcp.<name>.<tool>")
    a.add_argument("--command", help="stdio: the program and its arguments, as one string")
    a.add_argument("--server-url", dest="url_of_server", help="a streamable HTTP server's URL")
    a.add_argument("--env", action="append", metavar="NAME=VALUE", help="stdio (repeatable)")
    a.add_argument("--secret-env", action="append", metavar="NAME=VALUE|env:VAR", help="sealed")
    a.add_argument("--header", action="append", metavar="NAME=VALUE", help="http (repeatable)")
    a.add_argument("--secret-header", action="append", metavar="NAME=VALUE|env:VAR", help="sealed")
    a.add_argument("--side-effect", action="append", metavar="TOOL=read|write|critical")
    a.set_defaults(fn=add)
    ls = verbs.add_parser("list", help="this workspace's servers")
    ls.set_defaults(fn=list_servers)
    sh = verbs.add_parser("show", help="a server and its tools")
    sh.set_defaults(fn=show)
    rf = verbs.add_parser("refresh", help="list the server's tools again")
    rf.set_defaults(fn=refresh)
    rm = verbs.add_parser("remove", help="forget the server; its tools leave the catalogue")
    rm.set_defaults(fn=remove)
    se = verbs.add_parser("side-effect", help="override a tool's class (auto: from its hints)")
    se.add_argument("server")
    se.add_argument("tool", help="the tool's own name (without mcp.<server>.)")
    se.add_argument("side_effect", choices=["read", "write", "critical", "auto"])
    se.set_defaults(fn=side_effect)
    for verb in (sh, rf, rm):
        verb.add_argument("server", help="its name or id")
    leaves = [servers, a, ls, sh, rf, rm, se]
    for leaf in leaves:
        if leaf is not servers:
            leaf.add_argument("--json", action="store_true")
    return leaves
