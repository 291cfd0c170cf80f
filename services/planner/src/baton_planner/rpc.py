"""The planner's saved-plan API over NATS request/reply (the kit's server, queue group
``planner``): the gateway's ``/v1/plans/{name}…`` routes send a ``PlanCall`` and relay the reply.
A ``draft`` call makes a plan from words and records nothing (``drafting.py``); a ``compare``
call makes two, the offline planner's and the model's, and their differences (``comparing.py``).

A change is committed before it is answered; a lost race with another replica is settled by the
store's version check, and the call is made again on the plan as the log now says.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from baton_common import contracts as c
from baton_common.kit.rpc import ANY, CallServer, Handler, commit_retrying
from baton_common.service import Runtime

from baton_planner.comparing import Comparison
from baton_planner.drafting import draft_reply
from baton_planner.library import PlanLibrary
from baton_planner.planners import Planner

log = logging.getLogger(__name__)


class PlanCalls:
    """Saved-plan calls for this process: the library decides, the call commits."""

    def __init__(
        self, runtime: Runtime, library: PlanLibrary, drafter: Planner, comparison: Comparison
    ) -> None:
        self.runtime, self.library, self.drafter = runtime, library, drafter
        self.comparison = comparison
        self.lock = asyncio.Lock()  # one change at a time in this process; replicas race safely

    def server(self) -> CallServer[c.PlanCall, c.PlanReply]:
        subject = c.planner_subject(self.runtime.settings.subject_root)
        # a draft and a comparison record nothing; the library dispatches on every other one
        handlers: dict[str, Handler[c.PlanCall, c.PlanReply]] = {
            "draft": functools.partial(draft_reply, self.drafter),
            "compare": self.comparison.reply,
            ANY: self.execute,
        }
        return CallServer(self.runtime, "planner", subject, c.PlanCall, c.PlanReply, handlers)

    async def execute(self, call: c.PlanCall) -> c.PlanReply:
        run = functools.partial(self.library.run, call)
        reply = await commit_retrying(
            self.runtime, self.library.store, self.lock, run, trace=f"plan {call.op}"
        )
        log.debug("plan %s: %s by %s: %s", call.name, call.op, call.actor, reply.status)
        return reply
