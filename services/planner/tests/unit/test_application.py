"""The planner application on the in-memory store."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.store import MemoryEventStore
from baton_planner.application import PlannerApp
from baton_planner.offline import OfflinePlanner

DEMO = "collect incident reports for api, billing and search, summarise them and save the summary to summary.md"


class Recording(OfflinePlanner):
    def __init__(self) -> None:
        super().__init__()
        self.learned: list[str] = []

    def remember(self, request: str, plan: Any) -> None:
        self.learned.append(request)
        super().remember(request, plan)


async def test_request_becomes_a_plan_once_and_success_teaches_the_planner() -> None:
    store, planner = MemoryEventStore("planner"), Recording()
    app = PlannerApp(store, planner)
    eid = uuid4()
    request = c.ExecutionRequested(aggregate_id=eid, aggregate_version=1, request=DEMO)
    commit = await app.handle([Delivery(request)])
    store.commit(commit)
    [proposed] = commit.events
    assert isinstance(proposed, c.PlanProposed) and proposed.planner == "offline"
    assert proposed.execution_id == eid and proposed.causation_id == request.event_id
    assert len(proposed.plan["steps"]) == 5
    app.invalidate()  # after a conflict the store is consulted: a second copy is not planned again
    assert (await app.handle([Delivery(request)])).events == []
    await app.handle([Delivery(c.ExecutionSucceeded(aggregate_id=eid, aggregate_version=9))])
    assert planner.learned == [DEMO]


async def test_direct_plans_skip_the_planner_and_empty_requests_fail_clearly() -> None:
    app = PlannerApp(MemoryEventStore("planner"), OfflinePlanner())
    direct = c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, plan={"steps": []})
    assert (await app.handle([Delivery(direct)])).events == []
    empty = c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, request="   ")
    [failed] = (await app.handle([Delivery(empty)])).events
    assert isinstance(failed, c.PlanningFailed) and "empty" in failed.reason


async def test_a_plan_needing_a_tool_the_workspace_denies_fails_with_the_reason() -> None:
    from baton_common.workspaces import WorkspacePolicy

    policies = {"acme": WorkspacePolicy(tools_deny=["files.write"])}
    app = PlannerApp(
        MemoryEventStore("planner"),
        OfflinePlanner(),
        policy_of=lambda ws: policies.get(ws, WorkspacePolicy()),
    )
    denied = c.ExecutionRequested(
        aggregate_id=uuid4(), aggregate_version=1, workspace_id="acme", request=DEMO
    )
    allowed = c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, request=DEMO)
    failed, proposed = (await app.handle([Delivery(denied), Delivery(allowed)])).events
    assert isinstance(failed, c.PlanningFailed)
    assert "tool 'files.write' is denied in this workspace" in failed.reason
    assert isinstance(proposed, c.PlanProposed)
