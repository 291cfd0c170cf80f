"""What every command module repeats, written once: its call to the gateway, a verb's parser,
printing a reply as JSON or as text, and a listing that says when it is empty."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

from baton_cli.client import call, gateway_url


def api(args: argparse.Namespace, method: str, path: str, body: Any = None, **params: Any) -> Any:
    """A JSON call to the gateway of ``--url`` (else the running engine); query parameters that
    are None are left out."""
    clean = {k: v for k, v in params.items() if v is not None}
    return call(method, gateway_url(getattr(args, "url", None)), path, body, clean or None)


def verb(
    actions: Any,
    name: str,
    help: str,
    fn: Callable[[argparse.Namespace], int],
    *positionals: str,
    json: bool = False,
    **defaults: Any,
) -> argparse.ArgumentParser:
    """A subcommand running ``fn``: its positional arguments, then ``--json`` when it can print
    its reply as JSON; ``defaults`` are set on the namespace (``action="show"``, say)."""
    parser: argparse.ArgumentParser = actions.add_parser(name, help=help)
    for positional in positionals:
        parser.add_argument(positional)
    if json:
        parser.add_argument("--json", action="store_true")
    parser.set_defaults(fn=fn, **defaults)
    return parser


def print_reply(args: argparse.Namespace, reply: Any, render: Callable[[Any], str]) -> int:
    """The reply as indented JSON with ``--json``, else as ``render`` words it (nothing, when it
    finds nothing to say)."""
    if text := json.dumps(reply, indent=2) if getattr(args, "json", False) else render(reply):
        print(text)
    return 0


def listing(items: Sequence[Any], line: Callable[[Any], str], empty: str) -> str:
    """One line per item, or ``empty`` when there is none."""
    return "\n".join(line(item) for item in items) if items else empty


def print_lines(items: Sequence[Any], line: Callable[[Any], str], empty: str) -> int:
    """Prints the ``listing`` of the items."""
    print(listing(items, line, empty))
    return 0
