"""The calendars API over NATS request/reply (queue group ``calendar``): the gateway forwards
each call with the caller's workspace, and a change is committed before it is answered."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from baton_common import tracing
from baton_common.contracts import CalendarCall, CalendarReply, calendar_rpc_subject
from baton_common.service import Runtime
from baton_common.store import run_sync
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from baton_calendar.application import CalendarApp
from baton_calendar.errors import CalendarError

log = logging.getLogger(__name__)
QUEUE = "calendar"
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


class CalendarServer:
    """Answers the gateway's calendar calls for this process."""

    def __init__(self, runtime: Runtime, app: CalendarApp) -> None:
        self.runtime, self.app = runtime, app
        self.sub: Subscription | None = None

    async def start(self) -> None:
        subject = calendar_rpc_subject(self.runtime.settings.subject_root)
        self.sub = await self.runtime.bus.nc.subscribe(subject, queue=QUEUE, cb=self.on_request)

    async def stop(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()

    async def on_request(self, msg: Msg) -> None:
        if not self.runtime.bus.verified(msg, "calendar call"):
            return
        with tracing.serving("calendar call", msg.headers):
            reply = await self.answer(msg.data)
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())

    async def answer(self, data: bytes) -> CalendarReply:
        try:
            call = CalendarCall.model_validate_json(data)
        except ValidationError as exc:
            return CalendarReply(status=422, detail=f"malformed calendar call: {exc.errors()[0]}")
        op = OPS.get(call.op)
        if op is None:
            return CalendarReply(status=404, detail=f"no calendar operation {call.op!r}")
        try:
            status, body = await run_sync(op, self.app, call)
        except CalendarError as exc:
            return CalendarReply(status=exc.status, detail=exc.detail)
        except KeyError as exc:
            return CalendarReply(status=422, detail=f"{exc.args[0]}: required")
        except Exception as exc:
            log.exception("calendar call %s failed", call.op)
            return CalendarReply(
                status=503, detail=f"the calendar service failed ({exc}); try again"
            )
        return CalendarReply(status=status, body=body)
