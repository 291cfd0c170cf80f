"""``baton calendar …``: calendars, their events, free slots and ICS, through the gateway."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from baton_cli.client import call_text, gateway_url
from baton_cli.errors import CliError
from baton_cli.verbs import api, listing, print_reply, verb


def _api(args: argparse.Namespace, method: str, path: str, body: Any = None, **params: Any) -> Any:
    return api(args, method, f"/v1/calendars{path}", body, **params)


def _hours(text: str | None) -> dict[str, Any] | None:
    """``09:00-17:00`` or ``09:00-17:00@mon,tue,wed`` as working hours."""
    if not text:
        return None
    span, _, days = text.partition("@")
    start, _, end = span.partition("-")
    hours: dict[str, Any] = {"start": start.strip(), "end": end.strip()}
    if days:
        hours["days"] = [d.strip() for d in days.split(",")]
    return hours


def slots(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "attendees": args.attendee,
        "duration_minutes": args.duration,
        "window_start": args.start,
        "window_end": args.end or args.start,
        "max_results": args.max,
    }
    extra = {
        "optional_attendees": args.optional,
        "timezone": args.timezone,
        "buffer_before_minutes": args.buffer,
        "buffer_after_minutes": args.buffer,
        "granularity_minutes": args.granularity,
        "working_hours": _hours(args.hours),
        "resources": args.resource,
        "rooms": "any" if args.room == ["any"] else args.room,
        "min_capacity": args.capacity,
    }
    body.update({k: v for k, v in extra.items() if v})
    found = _api(args, "POST", "/slots", body)["slots"]
    return print_reply(args, found, lambda f: listing(f, _slot, "no free slot in that window"))


def _slot(slot: dict[str, Any]) -> str:
    room = f"  room {slot['room']}" if slot.get("room") else ""
    return f"{slot['start']} → {slot['end']}{room}  score {slot['score']:.2f}  {slot['reason']}"


def events(args: argparse.Namespace) -> int:
    found = _api(
        args,
        "GET",
        f"/{args.calendar}/events",
        window_start=args.start,
        window_end=args.end or args.start,
        timezone=args.timezone,
    )["events"]
    return print_reply(args, found, lambda f: listing(f, _event, "no events in that window"))


def _event(e: dict[str, Any]) -> str:
    busy = "" if e["busy"] else "  (free)"
    return f"{e['start']} → {e['end']}  {e['title'] or '(no title)'}  {e['uid']}{busy}"


def calendars(args: argparse.Namespace) -> int:
    for cal in _api(args, "GET", "")["items"]:
        where = cal["url"] or "built in"
        owner = f"  owner {cal['owner']}" if cal.get("owner") else ""
        kind = f"  {cal['kind']}" if cal.get("kind") else ""
        size = f" for {cal['capacity']}" if cal.get("capacity") else ""
        print(f"{cal['name']:<20} {cal['timezone']:<20} {where}{owner}{kind}{size}")
    return 0


def connect(args: argparse.Namespace) -> int:
    body = {
        "name": args.name,
        "url": args.caldav,
        "username": args.username,
        "password": args.password,
        "owner": args.owner,
        "timezone": args.timezone,
        "working_hours": _hours(args.hours),
        "default": args.default or None,
        "kind": args.kind,
        "capacity": args.capacity,
    }
    made = _api(args, "POST", "", {k: v for k, v in body.items() if v is not None})
    print(f"calendar {made['name']} ({made['backend']}) {made['id']}")
    return 0


def mark(args: argparse.Namespace) -> int:
    body = {"kind": args.kind, "capacity": args.capacity, "owner": args.owner}
    done = _api(args, "PATCH", f"/{args.calendar}", {k: v for k, v in body.items() if v})
    size = f" for {done['capacity']}" if done.get("capacity") else ""
    print(f"calendar {done['name']}: {done['kind']}{size}")
    return 0


def export(args: argparse.Namespace) -> int:
    path = f"/v1/calendars/{args.calendar}/ics"
    sys.stdout.write(call_text("GET", gateway_url(args.url), path))
    return 0


def import_ics(args: argparse.Namespace) -> int:
    try:
        text = Path(args.file).read_text("utf-8") if args.file != "-" else sys.stdin.read()
    except OSError as exc:
        raise CliError(f"cannot read {args.file}: {exc}") from None
    path = f"/v1/calendars/{args.calendar}/ics"
    answer = json.loads(call_text("POST", gateway_url(args.url), path, text, "text/calendar"))
    print(f"imported {answer['imported']} event(s) into {answer['calendar']}")
    return 0


def add_calendar_commands(sub: Any) -> list[argparse.ArgumentParser]:
    p = sub.add_parser("calendar", help="calendars: free slots, events, connect, import/export ICS")
    p.set_defaults(fn=calendars)
    actions = p.add_subparsers(dest="calendar_action")
    s = actions.add_parser("slots", help="ranked free slots for attendees")
    s.add_argument("--attendee", "-a", action="append", required=True, help="repeatable")
    s.add_argument("--optional", action="append", help="an optional attendee (repeatable)")
    s.add_argument("--duration", type=float, required=True, help="minutes")
    s.add_argument("--from", dest="start", required=True, help="ISO time, today, or a weekday")
    s.add_argument("--to", dest="end", help="default: the end of --from's day")
    s.add_argument("--timezone", help="IANA zone of times without one (default UTC)")
    s.add_argument("--hours", help="default working hours, e.g. 09:00-17:00@mon,tue,wed")
    s.add_argument("--buffer", type=float, help="minutes free before and after")
    s.add_argument("--granularity", type=float, help="minutes between candidate starts")
    s.add_argument("--max", type=int, default=5)
    s.add_argument("--resource", action="append", help="a room or equipment that must be free")
    s.add_argument("--room", action="append", help="one of these rooms (repeatable; any: all)")
    s.add_argument("--capacity", type=int, help="people the room must hold (default: attendees)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=slots)
    e = actions.add_parser("events", help="events in a window (recurrences expanded)")
    e.add_argument("--calendar", default="default")
    e.add_argument("--from", dest="start", required=True)
    e.add_argument("--to", dest="end")
    e.add_argument("--timezone")
    e.add_argument("--json", action="store_true")
    e.set_defaults(fn=events)
    c = actions.add_parser("connect", help="connect a CalDAV calendar (or make a built-in one)")
    c.add_argument("name")
    c.add_argument("--caldav", help="the collection's URL (omit for a built-in calendar)")
    for flag in ("--username", "--password", "--owner", "--timezone", "--hours"):
        c.add_argument(flag)
    c.add_argument("--default", action="store_true")
    c.add_argument("--kind", choices=["person", "room", "equipment"], help="whose (or what's)")
    c.add_argument("--capacity", type=int, help="the people a room holds")
    c.set_defaults(fn=connect)
    m = verb(
        actions, "mark", "mark a calendar as a room, equipment or a person's", mark, "calendar"
    )
    m.add_argument("--kind", choices=["person", "room", "equipment"])
    m.add_argument("--capacity", type=int, help="the people a room holds")
    m.add_argument("--owner", help="its address (a room's or equipment's e-mail)")
    x = verb(actions, "export", "print a calendar as ICS", export, "calendar")
    i = verb(actions, "import", "import an ICS file (- for stdin)", import_ics, "calendar", "file")
    return [p, s, e, c, m, x, i]
