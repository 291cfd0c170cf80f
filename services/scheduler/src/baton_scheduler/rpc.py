"""The scheduler's API over NATS request/reply (queue group ``scheduler``): the gateway's
``/v1/schedules`` and ``/v1/triggers`` routes send a ``SchedulerCall`` and relay the reply.

A change is committed before it is answered; a lost race (a tick, another replica) is settled
by the store's version check, and the call is made again on the objects as the log now says.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

from baton_common import contracts as c
from baton_common import tracing
from baton_common.sealing import Sealer, sealed_values
from baton_common.service import Runtime
from baton_common.store import ConcurrencyConflict, run_sync
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from baton_scheduler.commands import Commands, Result, backfill_range
from baton_scheduler.domain import SchedulerError, Trigger
from baton_scheduler.replay import past_events

log = logging.getLogger(__name__)
QUEUE = "scheduler"
ATTEMPTS = 5


class CallServer:
    """Answers calls for this process, under the lock the consumer and tick loop share."""

    def __init__(self, runtime: Runtime, commands: Commands, lock: asyncio.Lock) -> None:
        self.runtime, self.commands, self.lock = runtime, commands, lock
        self.sub: Subscription | None = None
        self.sealer: Sealer | None = None  # made at the first deletion (crypto-shredding)

    async def start(self) -> None:
        subject = c.scheduler_subject(self.runtime.settings.subject_root)
        self.sub = await self.runtime.bus.nc.subscribe(subject, queue=QUEUE, cb=self.on_request)
        await self.runtime.bus.nc.flush()  # the server knows it before we say we are ready

    async def stop(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()

    async def on_request(self, msg: Msg) -> None:
        if not self.runtime.bus.verified(msg, "scheduler call"):
            return
        with tracing.serving("scheduler call", msg.headers):
            reply = await self.answer(msg.data)
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())

    async def answer(self, data: bytes) -> c.SchedulerReply:
        try:
            call = c.SchedulerCall.model_validate_json(data)
        except ValidationError as exc:
            return c.SchedulerReply(status=422, detail=f"malformed scheduler call: {exc}")
        try:
            return await self.execute(call)
        except Exception as exc:  # the store is down, say: the caller hears it at once
            log.exception("scheduler call %s failed", call.op)
            return c.SchedulerReply(
                status=503,
                detail=f"the scheduler could not do it ({type(exc).__name__}); try again",
            )

    async def execute(self, call: c.SchedulerCall) -> c.SchedulerReply:
        run: Callable[[], Result] = functools.partial(self.commands.run, call)
        if call.kind == "trigger" and call.op == "backfill":
            run = await self._trigger_backfill(call)
        for _ in range(ATTEMPTS):
            async with self.lock:
                commit, reply = await run_sync(run)
                if commit is None:
                    return reply
                commit = replace(
                    commit, events=tracing.begin(f"{call.kind} {call.op}", commit.events)
                )
                try:
                    rows = await run_sync(self.commands.app.store.commit, commit)
                except ConcurrencyConflict:
                    continue
            if self.runtime.relay and rows:
                self.runtime.relay.committed(rows)
            if call.op == "delete" and call.id is not None and reply.status < 300:
                # after the commit: a failed one leaves a live object whose secrets still open
                await run_sync(self._shred, UUID(str(call.id)))
            return reply
        return c.SchedulerReply(status=503, detail="it kept changing while we tried; try again")

    def _shred(self, object_id: UUID) -> int:
        """Destroy the data keys of every sealed value a deleted schedule's or trigger's history
        holds (the secret tool inputs of its plan): that history, and the executions it
        started, keep only ciphertext no key opens."""
        if self.sealer is None:
            self.sealer = Sealer.for_store(self.commands.app.store)
        history = self.commands.app.store.load(object_id)
        return self.sealer.destroy(s for e in history for s in sealed_values(e.model_dump()))

    async def _trigger_backfill(self, call: c.SchedulerCall) -> Callable[[], Result]:
        """Read the trigger's past events first (from the stream, outside the lock)."""
        app = self.commands.app
        await run_sync(app.refresh)
        try:
            trigger = app.get("trigger", str(call.id), call.workspace_id)
            assert isinstance(trigger, Trigger) and trigger.spec is not None
            start, end = (backfill_range(call.body, k, UTC) for k in ("start", "end"))
        except SchedulerError as exc:
            failed = c.SchedulerReply(status=exc.status, detail=str(exc))
            return lambda: (None, failed)
        events = await past_events(
            self.runtime.bus, call.workspace_id, trigger.spec.filter.type, start, end
        )
        now = datetime.now(UTC)
        return functools.partial(self.commands.backfill_trigger, call, events, now)
