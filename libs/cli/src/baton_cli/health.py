"""``baton status`` without an execution: every service of the running ``baton up`` and its
readiness (``/readyz`` on its health port; the gateway's on its HTTP port), in either mode."""

from __future__ import annotations

import argparse
import json
from typing import Any

from baton_cli.client import gateway_url, readiness, runtime_info
from baton_cli.errors import CliError


def print_readiness(args: argparse.Namespace) -> int:
    """0 when every service is ready, else 1."""
    info = runtime_info()
    if not info:
        raise CliError("no running `baton up` here (no runtime.json under $BATON_DATA_DIR)")
    urls = {"gateway": gateway_url(getattr(args, "url", None))}
    ports = info.get("health_ports") or {}
    urls |= {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    answers = {name: readiness(url) for name, url in sorted(urls.items())}
    if args.json:
        print(json.dumps({n: {"status": c, "says": w} for n, (c, w) in answers.items()}, indent=2))
    else:
        print(_mode(info))
        for name, (code, word) in answers.items():
            print(f"  {name:<12} {'ready' if code == 200 else 'NOT READY'}  {word}")
    return 0 if all(code == 200 for code, _ in answers.values()) else 1


def _mode(info: dict[str, Any]) -> str:
    pids = info.get("pids") or {}
    if list(pids) == ["engine"]:
        return f"one process (pid {pids['engine']}) serves every service (--one-process)"
    return f"{len(pids)} service processes"
