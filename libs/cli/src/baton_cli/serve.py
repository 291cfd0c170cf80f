"""``baton serve <service>``: one service's process (what containers and ``baton up`` run).

Apart from the rest of the CLI so that a service process imports none of it: ``baton serve``
is parsed before the CLI's parser, its subcommands and its HTTP client are built (issue 32).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from baton_cli.errors import CliError


def add_serve_parser(sub: Any) -> argparse.ArgumentParser:
    serve: argparse.ArgumentParser = sub.add_parser(
        "serve", help="run one service (what containers run)"
    )
    serve.add_argument(
        "service",
        nargs="+",
        help="one of the installed services: " + " | ".join(sorted(runners())) + "; several "
        "run together in this one process (what `baton up --one-process` runs; `worker#2` is a "
        "second worker)",
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
    names: list[str] = args.service
    found = runners()
    for name in names:
        if name.partition("#")[0] not in found:
            raise CliError(f"unknown service {name!r}; one of: {', '.join(found)}")
    if len(set(names)) < len(names):
        raise CliError("a service named twice: name a second replica `worker#2`")
    from baton_common.startwatch import watched

    if len(names) == 1:
        setup_logging(names[0], settings.log_level)
        main = found[names[0].partition("#")[0]].load()(settings)
        run_loop(watched(names[0], main, settings.start_timeout_s))  # a hung start ends
        return 0
    from baton_common.together import serve_together

    setup_logging("engine", settings.log_level)  # each service's records still say its name
    mains = {name: found[name.partition("#")[0]].load() for name in names}
    # No start bound here (the services start as tasks of one process), but its end is bounded.
    code: int = run_loop(watched("engine", serve_together(mains, settings, health_ports()), 0))
    return code


def health_ports() -> dict[str, int]:
    """Each service's health port when several share a process: ``BATON_HEALTH_PORTS``, JSON
    such as ``{"planner": 9101, "executor": 9102}`` (a service not named has none)."""
    raw = os.environ.get("BATON_HEALTH_PORTS") or "{}"
    try:
        ports = json.loads(raw)
        return {str(name): int(port) for name, port in ports.items()}
    except (ValueError, TypeError, AttributeError):
        raise CliError(
            f"BATON_HEALTH_PORTS is not a JSON object of service names to ports: {raw[:100]!r}"
        ) from None


def run_loop(main: Any) -> Any:
    """uvloop where available (a faster event loop for the bus-heavy services), else asyncio;
    what ``main`` returns."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    if os.environ.get("BATON_EVENT_LOOP") == "asyncio":
        return asyncio.run(main)
    return uvloop.run(main)


def runners() -> dict[str, Any]:
    """The services installed: the ``baton.services`` entry points (a plugin adds its own)."""
    from importlib.metadata import entry_points

    return {e.name: e for e in entry_points(group="baton.services")}
