"""The planner's saved-plan API over NATS request/reply (queue group ``planner``): the gateway's
``/v1/plans/{name}…`` routes send a ``PlanCall`` and relay the reply.

A change is committed before it is answered; a lost race with another replica is settled by the
store's version check, and the call is made again on the plan as the log now says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from baton_common import contracts as c
from baton_common.service import Runtime
from baton_common.store import ConcurrencyConflict, run_sync
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from baton_planner.library import PlanLibrary

log = logging.getLogger(__name__)
QUEUE = "planner"
ATTEMPTS = 5


class PlanCallServer:
    """Answers saved-plan calls for this process."""

    def __init__(self, runtime: Runtime, library: PlanLibrary) -> None:
        self.runtime, self.library = runtime, library
        self.sub: Subscription | None = None
        self.lock = asyncio.Lock()  # one change at a time in this process; replicas race safely

    async def start(self) -> None:
        subject = c.planner_subject(self.runtime.settings.subject_root)
        self.sub = await self.runtime.bus.nc.subscribe(subject, queue=QUEUE, cb=self.on_request)
        await self.runtime.bus.nc.flush()  # the server knows it before we say we are ready

    async def stop(self) -> None:
        """Take no new calls, finish the ones in hand (SIGTERM drain)."""
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()

    async def on_request(self, msg: Msg) -> None:
        if not self.runtime.bus.verified(msg, "planner call"):
            return
        reply = await self.answer(msg.data)
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())

    async def answer(self, data: bytes) -> c.PlanReply:
        try:
            call = c.PlanCall.model_validate_json(data)
        except ValidationError as exc:
            return c.PlanReply(status=422, detail=f"malformed plan call: {exc}")
        try:
            return await self.execute(call)
        except Exception as exc:  # the store is down, say: the caller hears it at once
            log.exception("plan call %s failed", call.op)
            return c.PlanReply(
                status=503, detail=f"the planner could not do it ({type(exc).__name__}); try again"
            )

    async def execute(self, call: c.PlanCall) -> c.PlanReply:
        for _ in range(ATTEMPTS):
            async with self.lock:
                commit, reply = await run_sync(self.library.run, call)
                if commit is None:
                    return reply
                try:
                    rows = await run_sync(self.library.store.commit, commit)
                except ConcurrencyConflict:
                    continue
            if self.runtime.relay and rows:
                self.runtime.relay.committed(rows)
            log.info("plan %s: %s by %s", call.name, call.op, call.actor)
            return reply
        return c.PlanReply(status=503, detail="the plan kept changing while we tried; try again")
