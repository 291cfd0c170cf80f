"""Wiring of the planner process."""

from __future__ import annotations

import asyncio
import functools
import logging
import os

from baton_common.service import Runtime, every, serving
from baton_common.settings import Settings
from baton_common.startsnapshots import StartSnapshots
from baton_common.store import PostgresEventStore, run_sync
from baton_common.toolstats import StatsReader
from baton_common.workspaces import PolicyReader

from baton_planner.application import PlannerApp
from baton_planner.compaction import compact_outcomes
from baton_planner.comparing import Comparison
from baton_planner.extensions import StatsFeed
from baton_planner.handlers import planner_consumer
from baton_planner.insights import insights_server
from baton_planner.learning import Learner
from baton_planner.library import PlanLibrary
from baton_planner.modelplanner import TALLIED
from baton_planner.offline import OfflinePlanner
from baton_planner.questions import QuestionsConfigError, QuestionSettings
from baton_planner.reuse import load_learning
from baton_planner.rpc import PlanCalls
from baton_planner.selection import PlannerConfigError, model_planner, select_planner
from baton_planner.semantic import (
    SemanticConfigError,
    describe,
    select_embedder,
    threshold_from,
)

log = logging.getLogger(__name__)

NAME = "planner"  # its row in the start snapshots: the saved plans


async def start_planner(settings: Settings) -> Runtime:
    """Everything running but the signal handlers and health port (``serve_forever``)."""
    try:  # a bad setting stops the start with its message, not a traceback
        embedder = select_embedder()
        threshold = threshold_from(os.environ.get("BATON_PLAN_REUSE_THRESHOLD"), describe(embedder))
        planner, drafter, model = select_planner(), select_planner(), model_planner()
        questions = QuestionSettings.from_env()
    except (SemanticConfigError, PlannerConfigError, QuestionsConfigError) as exc:
        raise SystemExit(f"planner: {exc}") from None
    runtime = await Runtime.open("planner", settings, store="planner")
    assert runtime.store is not None
    policies = PolicyReader(settings.database_url, settings.db_schema)
    feed = StatsFeed(StatsReader(settings.database_url, settings.db_schema))
    snapshots = await run_sync(StartSnapshots, settings.database_url, settings.db_schema, NAME)
    library = PlanLibrary(
        runtime.store, snapshots=snapshots, snapshot_every=settings.snapshot_every
    )
    await run_sync(library.start)  # the saved plans from their newest snapshot and the log after
    runtime.spawn(
        every(60.0, functools.partial(run_sync, library.snapshot), "snapshots"), "snapshots"
    )
    learner = Learner(embedder, threshold)
    app = PlannerApp(
        runtime.store,
        planner,
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
    runtime.spawn(
        every(settings.inbox_prune_every_s, functools.partial(compact, runtime), "compaction"),
        "learning compaction",
    )
    await insights_server(runtime, learner).start()
    runtime.metrics["plan_reuse_hits_total"] = lambda: float(learner.stats["hits"])
    runtime.metrics["plan_reuse_misses_total"] = lambda: float(learner.stats["misses"])
    runtime.metrics["plans_learned"] = lambda: float(len(learner.plans))
    _model_metrics(runtime, planner)
    await runtime.start_consumer(planner_consumer(runtime, app))
    # drafts and comparisons have their own planners: words alone, nothing learned
    comparison = Comparison(OfflinePlanner(), model)
    await PlanCalls(runtime, library, drafter, comparison).server().start()
    return runtime


async def compact(runtime: Runtime) -> int:
    """Sum the tool outcome events the relay has published into one per workspace
    (``compaction.py``), as often as the inbox is pruned."""
    store, relay = runtime.store, runtime.relay
    if not isinstance(store, PostgresEventStore) or relay is None:
        return 0  # the in-memory store (unit tests): nothing on disk to keep small
    upto = await run_sync(store.relay_position, relay.name)
    gone: int = await run_sync(
        compact_outcomes,
        runtime.settings.database_url,
        runtime.settings.db_schema,
        store.recorder.events_table_name,
        upto,
    )
    if gone:
        log.info("learning: %d tool outcome events summed into one per workspace", gone)
    return gone


def _model_metrics(runtime: Runtime, planner: object) -> None:
    """What the model planner spent and needed (plans, repairs, tokens), on /metrics."""
    model = getattr(planner, "primary", planner)  # a FallbackPlanner's model is its primary
    tally = getattr(model, "tally", None)
    if tally is None:
        return  # the offline planner: no model, nothing spent
    for key in TALLIED:
        runtime.metrics[f"planner_llm_{key}_total"] = functools.partial(_counted, tally, key)


def _counted(tally: dict[str, int], key: str) -> float:
    return float(tally[key])


run_planner = serving(start_planner)
