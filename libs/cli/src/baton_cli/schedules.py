"""``baton schedules …`` and ``baton triggers …``: create, list, show, pause, unpause,
trigger now, backfill, delete, and the history of ticks and firings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from baton_cli.arguments import parse_inputs, saved_ref
from baton_cli.client import call
from baton_cli.errors import CliError
from baton_cli.verbs import api as _api
from baton_cli.verbs import print_lines, print_reply

DEMO_SCHEDULE = {
    "name": "demo: every minute",
    "cron": "* * * * *",
    "timezone": "UTC",
    "request": "collect weather for paris and rome, then summarise them",
    "inputs": {"tick": "${schedule.scheduled_for}"},
}


def _base(args: argparse.Namespace) -> str:
    return f"/v1/{args.kind}s"


def listing(args: argparse.Namespace) -> int:
    items = _api(args, "GET", _base(args))["items"]
    return print_lines(items, _line, f"no {args.kind}s")


def _line(o: dict[str, Any]) -> str:
    return f"{o['id']}  {o['status']:<9} {o['name'][:30]:<30} {_when(o)}"


def _when(o: dict[str, Any]) -> str:
    if o["kind"] == "trigger":
        return f"on {o['definition']['filter']['type']}  fired {o['counts']['fired']}"
    nxt = (o.get("next_fire_times") or ["—"])[0]
    return f"next {nxt}  runs {o['runs']}"


def show(args: argparse.Namespace) -> int:
    return print_reply(args, _api(args, "GET", f"{_base(args)}/{args.id}", next=args.next), _shown)


def _shown(o: dict[str, Any]) -> str:
    """A schedule or trigger for a terminal: its definition, next fire times and recent runs."""
    lines = [f"{o['kind']} {o['id']}: {o['name']} ({o['status']})"]
    if o.get("note"):
        lines.append(f"  note: {o['note']}")
    definition = {k: v for k, v in o["definition"].items() if k not in ("plan", "name")}
    lines.append("  " + json.dumps(definition, ensure_ascii=False))
    lines += [f"  next: {t}" for t in o.get("next_fire_times") or []]
    for r in o["recent_runs"]:
        at = r.get("scheduled_for") or r.get("fired_at")
        lines.append(
            f"  {at}  {r['outcome']:<12} {r.get('execution_id') or ''} {r.get('reason') or ''}"
        )
    return "\n".join(lines)


def create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "inputs": parse_inputs(args.input)}
    if args.plan:
        try:
            body["plan"] = Path(args.plan).read_text()
        except OSError as exc:
            raise CliError(f"cannot read {args.plan}: {exc}") from None
    elif args.saved:
        body["plan_ref"] = saved_ref(args.saved)
    else:
        body["request"] = args.request
    body.update(_kind_fields(args))
    made = _api(args, "POST", _base(args), {k: v for k, v in body.items() if v is not None})
    nxt = (made.get("next_fire_times") or [None])[0]
    print(f"{args.kind} {made['id']} created" + (f"; next: {nxt}" if nxt else ""))
    return 0


def _kind_fields(args: argparse.Namespace) -> dict[str, Any]:
    if args.kind == "trigger":
        where = [_condition(w) for w in args.where or []]
        return {"filter": {"type": args.on, "plan": args.plan_name, "where": where}}
    return {
        "cron": args.cron,
        "every_seconds": args.every,
        "at": args.at,
        "timezone": args.tz,
        "overlap": args.overlap,
        "catchup": args.catchup,
        "jitter_seconds": args.jitter,
        "max_runs": args.max_runs,
    }


def _condition(text: str) -> dict[str, Any]:
    """``path=value`` (equals), ``path~text`` (contains) or ``path`` (exists)."""
    for sep, op in (("~", "contains"), ("=", "equals")):
        if sep in text:
            path, raw = text.split(sep, 1)
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
            return {"path": path, op: value}
    return {"path": text, "exists": True}


def command(args: argparse.Namespace) -> int:
    body = {"note": args.note} if getattr(args, "note", None) else None
    if args.action == "backfill":
        body = {"start": args.start, "end": args.end}
    path = {"trigger-now": "trigger-now"}.get(args.action, args.action)
    result = _api(args, "POST", f"{_base(args)}/{args.id}/{path}", body)
    if args.action == "backfill":
        print(f"{result['started']} started, {result['already_ran']} had run already")
    else:
        print(f"{args.kind} {args.id}: {args.action} done ({result.get('status')})")
    return 0


def delete(args: argparse.Namespace) -> int:
    _api(args, "DELETE", f"{_base(args)}/{args.id}")
    print(f"{args.kind} {args.id} deleted")
    return 0


def events(args: argparse.Namespace) -> int:
    """The history, oldest first: the ticks fired, skipped, buffered or missed (its replay)."""
    for e in _api(args, "GET", f"{_base(args)}/{args.id}/events", limit=args.limit)["items"]:
        data = {k: v for k, v in e.items() if k not in _ENVELOPE}
        print(f"{e['version']:>5}  {e['occurred_at'][:23]}  {e['type']:<24} {json.dumps(data)}")
    return 0


_ENVELOPE = {"type", "schema_version", "event_id", "workspace_id", "aggregate_version", "version"}
_ENVELOPE |= {"occurred_at", "correlation_id", "causation_id", "traceparent", "definition"}


def demo_schedule(url: str) -> None:
    """``baton up --demo``: an every-minute schedule beside the demo request."""
    try:  # one demo schedule, however often the demo runs
        items = call("GET", url, "/v1/schedules")["items"]
        same = [s for s in items if s["name"] == DEMO_SCHEDULE["name"]]
        made = same[0] if same else call("POST", url, "/v1/schedules", DEMO_SCHEDULE)
    except CliError as exc:
        print(f"  (no demo schedule: {exc})")
        return
    print(f"Demo schedule {made['id']}: every minute; `baton schedules show {made['id']}`")


def add_schedule_commands(sub: Any) -> list[argparse.ArgumentParser]:
    made: list[argparse.ArgumentParser] = []
    for kind in ("schedule", "trigger"):
        top = sub.add_parser(f"{kind}s", help=f"{kind}s: list, show, create, pause, trigger …")
        top.set_defaults(fn=listing, kind=kind)
        actions = top.add_subparsers(dest=f"{kind}_action")
        made += [top, *_actions(actions, kind)]
    return made


def _actions(actions: Any, kind: str) -> list[argparse.ArgumentParser]:
    s = actions.add_parser("show", help="definition, next fire times, recent runs")
    s.add_argument("id")
    s.add_argument("--next", type=int, help="how many next fire times")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=show, kind=kind)
    made = [s, _create_parser(actions, kind)]
    for action in ("pause", "unpause", "trigger-now"):
        p = actions.add_parser(action, help=f"{action} a {kind}")
        p.add_argument("id")
        if action != "trigger-now":
            p.add_argument("--note", help="why (kept with the schedule)")
        p.set_defaults(fn=command, kind=kind, action=action)
        made.append(p)
    d = actions.add_parser("delete", help=f"delete a {kind}")
    d.add_argument("id")
    d.set_defaults(fn=delete, kind=kind)
    e = actions.add_parser("events", help="its history: ticks fired, skipped, missed; firings")
    e.add_argument("id")
    e.add_argument("--limit", type=int, default=200)
    e.set_defaults(fn=events, kind=kind)
    made += [d, e]
    if kind == "schedule":
        b = actions.add_parser("backfill", help="run every tick of a past range once")
        b.add_argument("id")
        b.add_argument("--start", required=True, help="ISO time (the schedule's zone if naive)")
        b.add_argument("--end", required=True)
        b.set_defaults(fn=command, kind=kind, action="backfill")
        made.append(b)
    return made


def _create_parser(actions: Any, kind: str) -> argparse.ArgumentParser:
    c = actions.add_parser("create", help=f"create a {kind}")
    c.add_argument("name")
    what = c.add_mutually_exclusive_group(required=True)
    what.add_argument("--request", help="what to start, in words")
    what.add_argument("--plan", help="a plan file (YAML or JSON)")
    what.add_argument("--saved", metavar="NAME[@VERSION]", help="a saved plan (baton plans)")
    c.add_argument("--input", action="append", metavar="KEY=VALUE")
    if kind == "schedule":
        when = c.add_mutually_exclusive_group(required=True)
        when.add_argument("--cron", help="5 fields, or 6 with seconds first")
        when.add_argument("--every", type=float, help="seconds between runs")
        when.add_argument("--at", help="one time (ISO; the zone's wall time if naive)")
        c.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
        c.add_argument("--overlap", choices=["skip", "buffer_one", "allow_all", "cancel_previous"])
        c.add_argument("--catchup", choices=["all", "latest", "none"])
        c.add_argument("--jitter", type=float, help="seconds of random delay per tick")
        c.add_argument("--max-runs", type=int)
    else:
        c.add_argument("--on", required=True, help="event type, e.g. execution.failed")
        c.add_argument("--plan-name", help="only executions of this plan")
        c.add_argument("--where", action="append", help="path=value | path~text | path")
    c.set_defaults(fn=create, kind=kind)
    return c
