"""Decisions over NATS request/reply: the server side (queue group ``hitl``) and the client the
gateway calls.

A decision is committed before it is answered, so a 200 means it is recorded. A lost race (a
deadline, another replica, another approver) is settled by the store's version check: the gate is
loaded again and the decision taken again, which may then be refused (409).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from baton_common import tracing
from baton_common.approvals import DecisionReply, DecisionRequest, rpc_subject
from baton_common.bus import Bus
from baton_common.service import Runtime
from baton_common.store import ConcurrencyConflict, run_sync
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import ValidationError

from baton_hitl.application import HitlApp
from baton_hitl.domain import Approval, DecisionRefused

log = logging.getLogger(__name__)
QUEUE = "hitl"
ATTEMPTS = 5
DEFAULT_TIMEOUT_S = 10.0


# --- client -------------------------------------------------------------------------------------


async def request_decision(
    bus: Bus, request: DecisionRequest, timeout: float = DEFAULT_TIMEOUT_S
) -> DecisionReply:
    """Ask whichever hitl replica answers first. Never raises for a missing or silent service:
    that is a 503 reply, whose detail says whether anything may have been recorded."""
    subject = rpc_subject(bus.settings.subject_root)
    try:
        msg = await bus.request(subject, request.model_dump_json().encode(), timeout)
    except NoRespondersError:
        return DecisionReply(
            status=503, detail="the approval service (hitl) is not running; nothing was decided"
        )
    except (NatsTimeout, TimeoutError):
        return DecisionReply(
            status=503,
            detail=f"the approval service (hitl) did not answer within {timeout:g} s; the "
            "decision may or may not be recorded: read the gate before trying again",
        )
    return DecisionReply.model_validate_json(msg.data)


# --- server -------------------------------------------------------------------------------------


class DecisionServer:
    """Answers decisions for this process; shares the consumer's lock, so a decision and a
    deadline or a cancellation of the same process never race each other."""

    def __init__(self, runtime: Runtime, app: HitlApp, lock: asyncio.Lock) -> None:
        self.runtime, self.app, self.lock = runtime, app, lock
        self.sub: Subscription | None = None
        self.answered = 0

    async def start(self) -> None:
        subject = rpc_subject(self.runtime.settings.subject_root)
        self.sub = await self.runtime.bus.nc.subscribe(subject, queue=QUEUE, cb=self.on_request)

    async def stop(self) -> None:
        """Take no new decisions, finish the ones in hand (SIGTERM drain)."""
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()

    async def on_request(self, msg: Msg) -> None:
        if not self.runtime.bus.verified(msg, "decision"):
            return
        with tracing.serving("hitl decision", msg.headers):
            reply = await self.answer(msg.data)
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())
        self.answered += 1

    async def answer(self, data: bytes) -> DecisionReply:
        try:
            request = DecisionRequest.model_validate_json(data)
        except ValidationError as exc:
            return DecisionReply(status=422, detail=f"malformed decision request: {_brief(exc)}")
        try:
            return await self.decide(request)
        except Exception as exc:  # the store is down, say: the caller hears it at once
            log.exception("decision on %s failed", request.approval_id)
            return DecisionReply(
                status=503,
                detail=f"the decision could not be recorded ({type(exc).__name__}); try again",
            )

    async def decide(self, request: DecisionRequest) -> DecisionReply:
        for _ in range(ATTEMPTS):
            async with self.lock:
                try:
                    commit, gate = await run_sync(self.app.decide, request)
                except DecisionRefused as exc:
                    return DecisionReply(status=exc.status, detail=exc.detail)
                try:
                    rows = await run_sync(self.app.store.commit, commit)
                except ConcurrencyConflict:
                    log.info("gate %s changed meanwhile; deciding again", gate.id)
                    continue
            if self.runtime.relay:
                self.runtime.relay.committed(rows)
            self.app.decided(gate)
            log.info("gate %s: %s by %s", gate.id, request.decision, request.user)
            return DecisionReply(status=200, detail=_outcome(gate), approval=gate.view())
        return DecisionReply(status=503, detail="the gate kept changing while deciding; try again")


def _outcome(gate: Approval) -> str:
    if gate.status == "pending":
        return f"vote recorded: {len(gate.voters)} of {gate.min_approvals} approvals"
    return f"the gate is {gate.status}"


def _brief(exc: ValidationError) -> str:
    errors: list[Any] = exc.errors()
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors
    )
