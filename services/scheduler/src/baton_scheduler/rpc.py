"""The scheduler's API over NATS request/reply (the kit's server, queue group ``scheduler``):
the gateway's ``/v1/schedules`` and ``/v1/triggers`` routes send a ``SchedulerCall`` and relay
the reply.

A change is committed before it is answered; a lost race (a tick, another replica) is settled
by the store's version check, and the call is made again on the objects as the log now says.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from baton_common import contracts as c
from baton_common.kit.rpc import ANY, CallServer, commit_retrying
from baton_common.sealing import Sealer, sealed_values
from baton_common.service import Runtime
from baton_common.store import run_sync

from baton_scheduler.commands import Commands, Result, backfill_range
from baton_scheduler.domain import SchedulerError, Trigger
from baton_scheduler.replay import past_events

log = logging.getLogger(__name__)


class SchedulerCalls:
    """Calls for this process, under the lock the consumer and tick loop share."""

    def __init__(self, runtime: Runtime, commands: Commands, lock: asyncio.Lock) -> None:
        self.runtime, self.commands, self.lock = runtime, commands, lock
        self.sealer: Sealer | None = None  # made at the first deletion (crypto-shredding)

    def server(self) -> CallServer[c.SchedulerCall, c.SchedulerReply]:
        subject = c.scheduler_subject(self.runtime.settings.subject_root)
        return CallServer(
            self.runtime,
            "scheduler",
            subject,
            c.SchedulerCall,
            c.SchedulerReply,
            {ANY: self.execute},  # the commands dispatch on kind and operation
            verb=lambda call: f"{call.kind}.{call.op}",
        )

    async def execute(self, call: c.SchedulerCall) -> c.SchedulerReply:
        run: Callable[[], Result] = functools.partial(self.commands.run, call)
        if call.kind == "trigger" and call.op == "backfill":
            run = await self._trigger_backfill(call)
        store = self.commands.app.store
        trace = f"{call.kind} {call.op}"
        reply = await commit_retrying(self.runtime, store, self.lock, run, trace=trace)
        if call.op == "delete" and call.id is not None and reply.status < 300:
            # after the commit: a failed one leaves a live object whose secrets still open
            await run_sync(self._shred, UUID(str(call.id)))
        return reply

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
