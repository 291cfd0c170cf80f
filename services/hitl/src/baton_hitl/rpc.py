"""Decisions over NATS request/reply: the server side (queue group ``hitl``) and the client the
gateway calls.

A decision is committed before it is answered, so a 200 means it is recorded. A lost race (a
deadline, another replica, another approver) is settled by the store's version check: the gate is
loaded again and the decision taken again, which may then be refused (409).
"""

from __future__ import annotations

import asyncio
import functools
import logging

from baton_common.approvals import DecisionReply, DecisionRequest, rpc_subject
from baton_common.bus import Bus
from baton_common.kit.rpc import ANY, CallServer, commit_retrying
from baton_common.service import Runtime
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from baton_hitl.application import HitlApp
from baton_hitl.domain import Approval

log = logging.getLogger(__name__)
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


class Decisions:
    """Decisions for this process; shares the consumer's lock, so a decision and a deadline or a
    cancellation of the same process never race each other."""

    def __init__(self, runtime: Runtime, app: HitlApp, lock: asyncio.Lock) -> None:
        self.runtime, self.app, self.lock = runtime, app, lock

    def server(self) -> CallServer[DecisionRequest, DecisionReply]:
        subject = rpc_subject(self.runtime.settings.subject_root)
        return CallServer(
            self.runtime,
            "hitl",
            subject,
            DecisionRequest,
            DecisionReply,
            {ANY: self.decide},
            verb=lambda request: request.decision,
            span="decision",
            what="decision",
        )

    async def decide(self, request: DecisionRequest) -> DecisionReply:
        decide = functools.partial(self.app.decide, request)
        gate = await commit_retrying(self.runtime, self.app.store, self.lock, decide)
        self.app.decided(gate)
        log.info("gate %s: %s by %s", gate.id, request.decision, request.user)
        return DecisionReply(status=200, detail=_outcome(gate), approval=gate.view())


def _outcome(gate: Approval) -> str:
    if gate.status == "pending":
        return f"vote recorded: {len(gate.voters)} of {gate.min_approvals} approvals"
    return f"the gate is {gate.status}"
