"""The planner answers ``GET /v1/insights`` questions from what its learning engine holds."""

from __future__ import annotations

import contextlib
import logging

from baton_common.insights import InsightsReply, InsightsRequest, insights_subject
from baton_common.service import Runtime
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from baton_planner.learning import Learner

log = logging.getLogger(__name__)


class InsightsServer:
    """Answers for this replica (each replica folds the same learning events)."""

    def __init__(self, runtime: Runtime, learner: Learner) -> None:
        self.runtime, self.learner = runtime, learner
        self.sub: Subscription | None = None

    async def start(self) -> None:
        subject = insights_subject(self.runtime.settings.subject_root)
        self.sub = await self.runtime.bus.nc.subscribe(subject, queue="planner", cb=self.on_request)

    async def stop(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()

    async def on_request(self, msg: Msg) -> None:
        if not self.runtime.bus.verified(msg, "insights call"):
            return
        try:
            asked = InsightsRequest.model_validate_json(msg.data)
            reply = InsightsReply(body=self.learner.insights(asked.workspace_id))
        except ValidationError as exc:
            reply = InsightsReply(status=400, detail=f"bad insights request: {exc}")
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())
