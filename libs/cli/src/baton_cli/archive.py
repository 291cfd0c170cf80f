"""``baton archive list | show | restore | run | audit``: archived executions and audit days,
through the gateway."""

from __future__ import annotations

import argparse
import json
from typing import Any

from baton_cli.access import print_audit
from baton_cli.client import call, gateway_url


def _api(args: argparse.Namespace, method: str, path: str, **params: Any) -> Any:
    clean = {k: v for k, v in params.items() if v is not None}
    return call(method, gateway_url(args.url), path, None, clean or None)


def archive_list(args: argparse.Namespace) -> int:
    rows = _api(args, "GET", "/v1/archive", limit=args.limit)["items"]
    shown = [_line(r) for r in rows] or ["(no archived executions)"]
    print(json.dumps(rows, indent=2) if args.json else "\n".join(shown))
    return 0


def _line(row: dict[str, Any]) -> str:
    request = (row.get("request") or "")[:50]
    return f"{row['id']}  {row['archived_at'][:19]}  {row.get('status') or '':<10} {request}"


def archive_show(args: argparse.Namespace) -> int:
    found = _api(args, "GET", f"/v1/archive/{args.execution}", lines=args.lines or None)
    print(json.dumps(found, indent=2))
    return 0


def archive_restore(args: argparse.Namespace) -> int:
    done = _api(args, "POST", f"/v1/archive/{args.execution}/restore")
    print(
        f"restored {done['id']} into the views from {done['key']} (the next sweep past the "
        "retention period removes it again)"
    )
    return 0


def archive_run(args: argparse.Namespace) -> int:
    done = _api(args, "POST", "/v1/archive/run")
    print(
        f"archived {done['archived']} executions ({done['skipped']} changed meanwhile, "
        f"{len(done['failed'])} failed: tried again at the next sweep); "
        f"{done.get('folded', 0)} older summaries folded into daily counts; "
        f"{done.get('audit', 0)} audit rows archived"
    )
    return 1 if done["failed"] else 0


def archive_audit(args: argparse.Namespace) -> int:
    """Without a day: the archived days of the audit trail. With one: its rows, as `baton audit`
    prints them (oldest first)."""
    if args.day is None:
        days = _api(args, "GET", "/v1/audit/archived")["items"]
        shown = [
            f"{d['day']}  {d['rows']:>7} rows in {d['parts']} parts  {d['bytes']:>10} bytes"
            for d in days
        ]
        print(json.dumps(days, indent=2) if args.json else "\n".join(shown or ["(none)"]))
        return 0
    rows = _api(args, "GET", f"/v1/audit/archived/{args.day}", actor=args.actor)["items"]
    return print_audit(rows, args.json)


def add_archive_commands(sub: Any) -> list[argparse.ArgumentParser]:
    g = sub.add_parser(
        "archive", help="executions past their retention period: list, show, restore, sweep now"
    ).add_subparsers(dest="archive_action", required=True)
    ls = g.add_parser("list", help="this workspace's archived executions, newest first")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(fn=archive_list)
    show = g.add_parser("show", help="where an execution was archived, and its manifest")
    show.add_argument("execution")
    show.add_argument("--lines", action="store_true", help="every line of the archived history")
    show.set_defaults(fn=archive_show)
    restore = g.add_parser("restore", help="bring an archived history back into the views")
    restore.add_argument("execution")
    restore.set_defaults(fn=archive_restore)
    run = g.add_parser("run", help="archive every expired execution now (installation owner)")
    run.set_defaults(fn=archive_run)
    audit = g.add_parser(
        "audit", help="the audit trail's archived days (BATON_AUDIT_RETENTION_DAYS), or one's rows"
    )
    audit.add_argument("day", nargs="?", help="a day, YYYY-MM-DD (UTC): its archived rows")
    audit.add_argument("--actor", help='only this actor, e.g. "ci-bot (operator)"')
    audit.add_argument("--json", action="store_true")
    audit.set_defaults(fn=archive_audit)
    return [ls, show, restore, run, audit]
