"""The planner answers ``GET /v1/insights`` questions from what its learning engine holds."""

from __future__ import annotations

from baton_common.insights import InsightsReply, InsightsRequest, insights_subject
from baton_common.kit.rpc import ANY, CallServer
from baton_common.service import Runtime

from baton_planner.learning import Learner


def insights_server(
    runtime: Runtime, learner: Learner
) -> CallServer[InsightsRequest, InsightsReply]:
    """Answers for this replica (each replica folds the same learning events)."""

    async def insights(asked: InsightsRequest) -> InsightsReply:
        return InsightsReply(body=learner.insights(asked.workspace_id))

    subject = insights_subject(runtime.settings.subject_root)
    return CallServer(
        runtime,
        "planner",
        subject,
        InsightsRequest,
        InsightsReply,
        {ANY: insights},
        verb=lambda _: "insights",
        what="insights call",
    )
