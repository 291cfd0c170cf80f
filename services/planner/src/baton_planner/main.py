"""Wiring of the planner process."""

from __future__ import annotations

from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_common.workspaces import PolicyReader

from baton_planner.application import PlannerApp
from baton_planner.handlers import planner_consumer
from baton_planner.library import PlanLibrary
from baton_planner.planners import select_planner
from baton_planner.rpc import PlanCallServer


async def run_planner(settings: Settings) -> None:
    runtime = await Runtime.open("planner", settings, store="planner")
    assert runtime.store is not None
    policies = PolicyReader(settings.database_url, settings.db_schema)
    library = PlanLibrary(runtime.store)
    app = PlannerApp(runtime.store, select_planner(), policy_of=policies.get, library=library)
    await runtime.start_consumer(planner_consumer(runtime, app))
    calls = PlanCallServer(runtime, library)
    await calls.start()
    runtime.on_stop.append(calls.stop)
    await runtime.serve_forever()
