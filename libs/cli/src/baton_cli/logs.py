"""``baton logs <execution> [-f]``: the lines an execution's steps wrote, followed live."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from baton_cli.client import StreamLost, call, gateway_url, stream_lines
from baton_cli.errors import CliError

LEVEL_MARK = {"debug": "·", "info": " ", "warning": "!", "error": "✘"}


def add_log_commands(sub: Any) -> list[argparse.ArgumentParser]:
    logs = sub.add_parser("logs", help="print an execution's step logs (-f follows them live)")
    logs.add_argument("execution")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until it ends")
    logs.add_argument("--step", help="only this step's lines")
    logs.add_argument("--after", type=int, default=0, help="only lines after this seq")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    logs.set_defaults(fn=cmd_logs)
    return [logs]


def render(row: dict[str, Any]) -> str:
    attempt = f"#{row['attempt']}" + (" undo" if row.get("kind") == "compensate" else "")
    text = row["message"] + (" [cut]" if row.get("cut") else "")
    mark = "…" if row.get("marker") else LEVEL_MARK.get(row["level"], " ")
    return f"{row['at'][11:23]} {mark} {row['step_id']}{attempt:<4} {text}"


def cmd_logs(args: argparse.Namespace) -> int:
    url = gateway_url(args.url)
    path = f"/v1/executions/{args.execution}/logs"
    params: dict[str, Any] = {"after": args.after, **({"step": args.step} if args.step else {})}
    show = (lambda r: json.dumps(r)) if args.json else render
    if not args.follow:
        while True:
            page = call("GET", url, path, params=params)
            for row in page["items"]:
                print(show(row), flush=True)
            if page.get("next_after") is None:
                return 0
            params["after"] = page["next_after"]
    return _follow(url, path, {**params, "follow": "true"}, show)


def _follow(url: str, path: str, params: dict[str, Any], show: Any) -> int:
    call("GET", url, path, params={**params, "follow": "false", "limit": 1})  # clear 404s
    try:
        with stream_lines(url, path, params) as lines:
            event = ""
            for text in lines:
                if text.startswith("event:"):
                    event = text[6:].strip()
                elif text.startswith("data:") and event == "line":
                    print(show(json.loads(text[5:])), flush=True)
                elif text.startswith("data:") and event == "end":
                    status = json.loads(text[5:]).get("status")
                    print(f"-- execution {status}", file=sys.stderr)
                    return 0
    except StreamLost as exc:
        raise CliError(f"lost the log stream at {url}: {exc}") from None
    return 0
