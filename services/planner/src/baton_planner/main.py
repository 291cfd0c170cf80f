"""Wiring of the planner process."""

from __future__ import annotations

import asyncio
import logging
import os

from baton_common.service import Runtime, serving
from baton_common.settings import Settings
from baton_common.toolstats import StatsReader
from baton_common.workspaces import PolicyReader

from baton_planner.application import PlannerApp
from baton_planner.extensions import StatsFeed
from baton_planner.handlers import planner_consumer
from baton_planner.insights import insights_server
from baton_planner.learning import Learner
from baton_planner.library import PlanLibrary
from baton_planner.questions import QuestionsConfigError, QuestionSettings
from baton_planner.reuse import load_learning
from baton_planner.rpc import PlanCalls
from baton_planner.selection import select_planner
from baton_planner.semantic import (
    SemanticConfigError,
    describe,
    select_embedder,
    threshold_from,
)

log = logging.getLogger(__name__)


async def start_planner(settings: Settings) -> Runtime:
    """Everything running but the signal handlers and health port (``serve_forever``)."""
    try:  # a bad setting stops the start with its message, not a traceback
        embedder = select_embedder()
        threshold = threshold_from(os.environ.get("BATON_PLAN_REUSE_THRESHOLD"), describe(embedder))
        questions = QuestionSettings.from_env()
    except (SemanticConfigError, QuestionsConfigError) as exc:
        raise SystemExit(f"planner: {exc}") from None
    runtime = await Runtime.open("planner", settings, store="planner")
    assert runtime.store is not None
    policies = PolicyReader(settings.database_url, settings.db_schema)
    feed = StatsFeed(StatsReader(settings.database_url, settings.db_schema))
    library = PlanLibrary(runtime.store)
    learner = Learner(embedder, threshold)
    app = PlannerApp(
        runtime.store,
        select_planner(),
        policy_of=policies.get,
        library=library,
        learner=learner,
        stats_feed=feed,
        questions=questions,
    )
    loaded = await asyncio.to_thread(load_learning, app)
    log.info(
        "learning: %d events loaded; embedder %s, threshold %.2f",
        loaded,
        describe(embedder),
        threshold,
    )
    await insights_server(runtime, learner).start()
    runtime.metrics["plan_reuse_hits_total"] = lambda: float(learner.stats["hits"])
    runtime.metrics["plan_reuse_misses_total"] = lambda: float(learner.stats["misses"])
    runtime.metrics["plans_learned"] = lambda: float(len(learner.plans))
    await runtime.start_consumer(planner_consumer(runtime, app))
    drafter = select_planner()  # own: words alone
    await PlanCalls(runtime, library, drafter).server().start()
    return runtime


run_planner = serving(start_planner)
