"""``baton serve <service>``: one service's process (what containers and ``baton up`` run).

Apart from the rest of the CLI so that a service process imports none of it: ``baton serve``
is parsed before the CLI's parser, its subcommands and its HTTP client are built (issue 32).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from baton_cli.errors import CliError


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    serve: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run one service (what containers run)"
    )
    serve.add_argument(
        "service", help="one of the installed services: " + " | ".join(sorted(runners()))
    )
    serve.set_defaults(fn=cmd_serve)
    return serve


def serve_parser() -> argparse.ArgumentParser:
    """``baton serve`` alone (the full parser's ``serve`` is the same)."""
    p = argparse.ArgumentParser(prog="baton")
    add_serve_parser(p.add_subparsers(dest="command_name", required=True))
    return p


def cmd_serve(args: argparse.Namespace) -> int:
    from baton_common.settings import Settings
    from baton_common.telemetry import setup_logging

    settings = Settings()
    setup_logging(args.service, settings.log_level)
    found = runners()
    if args.service not in found:
        raise CliError(f"unknown service {args.service!r}; one of: {', '.join(found)}")
    run_loop(found[args.service].load()(settings))
    return 0


def run_loop(main: Any) -> None:
    """uvloop where available (a faster event loop for the bus-heavy services), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    if os.environ.get("BATON_EVENT_LOOP") == "asyncio":
        asyncio.run(main)
        return
    uvloop.run(main)


def runners() -> dict[str, Any]:
    """The services installed: the ``baton.services`` entry points (a plugin adds its own)."""
    from importlib.metadata import entry_points

    return {e.name: e for e in entry_points(group="baton.services")}
