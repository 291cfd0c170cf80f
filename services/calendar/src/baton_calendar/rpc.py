"""The calendars API over NATS request/reply (the kit's server, queue group ``calendar``): the
gateway forwards each call with the caller's workspace, and a change is committed before it is
answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from baton_common.contracts import CalendarCall, CalendarReply, calendar_rpc_subject
from baton_common.kit.rpc import CallServer
from baton_common.service import Runtime
from baton_common.store import run_sync

from baton_calendar.application import CalendarApp
from baton_calendar.errors import BadInput

Op = Callable[[CalendarApp, CalendarCall], tuple[int, Any]]


def _ref(call: CalendarCall) -> str:
    return str(call.body.get("calendar") or "")


OPS: dict[str, Op] = {
    "calendar.connect": lambda a, c: (201, a.connect(c.workspace_id, c.body, c.actor)),
    "calendar.list": lambda a, c: (200, {"items": a.calendars(c.workspace_id)}),
    "calendar.get": lambda a, c: (200, a.get(c.workspace_id, _ref(c))),
    "calendar.mark": lambda a, c: (200, a.mark(c.workspace_id, _ref(c), c.body, c.actor)),
    "calendar.delete": lambda a, c: (204, a.delete(c.workspace_id, _ref(c), c.actor)),
    "events.list": lambda a, c: (200, a.list_events(c.workspace_id, c.body)),
    "ics.export": lambda a, c: (200, {"ics": a.export_ics(c.workspace_id, _ref(c))}),
    "ics.import": lambda a, c: (
        201,
        a.import_ics(c.workspace_id, _ref(c), str(c.body.get("ics") or ""), c.actor),
    ),
    "slots.find": lambda a, c: (200, a.find_slots(c.workspace_id, c.body)),
    "conflicts.check": lambda a, c: (200, a.check_conflicts(c.workspace_id, c.body)),
}


def calendar_server(runtime: Runtime, app: CalendarApp) -> CallServer[CalendarCall, CalendarReply]:
    """Answers the gateway's calendar calls for this process."""
    subject = calendar_rpc_subject(runtime.settings.subject_root)
    handlers = {verb: _answering(app, op) for verb, op in OPS.items()}
    return CallServer(runtime, "calendar", subject, CalendarCall, CalendarReply, handlers)


def _answering(app: CalendarApp, op: Op) -> Callable[[CalendarCall], Awaitable[CalendarReply]]:
    """An operation as a handler: run off the event loop (the application blocks on CalDAV and
    the store); a field it needs and the call lacks is a 422."""

    async def handle(call: CalendarCall) -> CalendarReply:
        try:
            status, body = await run_sync(op, app, call)
        except KeyError as exc:
            raise BadInput(str(exc.args[0]), "required") from None
        return CalendarReply(status=status, body=body)

    return handle
