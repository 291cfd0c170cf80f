"""Bus subscribers of the planner."""

from __future__ import annotations

import json

from baton_common.consumer import Consumer, Delivery
from baton_common.service import Runtime
from baton_common.store import Commit
from nats.aio.msg import Msg

from baton_planner.application import SUBJECTS, PlannerApp


def planner_consumer(runtime: Runtime, app: PlannerApp) -> Consumer:
    async def on_messages(batch: list[Delivery]) -> Commit:
        return await app.handle(batch)

    assert runtime.store is not None
    return Consumer(
        runtime.bus,
        runtime.store,
        "planner",
        SUBJECTS,
        on_messages,
        batch=200,
        relay=runtime.relay,
        on_conflict=app.invalidate,
        # Most of what it reads is for learning, off the latency path: batched; a request to
        # plan is handled at once (one that brings its plan is not the planner's to wait for).
        linger_s=0.1,
        urgent=to_plan,
    )


def to_plan(msg: Msg) -> bool:
    """A request without a plan: someone waits for the planner."""
    if (msg.headers or {}).get("Baton-Type") != "execution.requested":
        return False
    try:
        return json.loads(msg.data).get("plan") is None
    except ValueError:
        return True  # handled at once, and parked with its reason there
