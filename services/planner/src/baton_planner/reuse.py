"""How the planner application uses the learning engine: reuse a proven plan for a request
that means the same as an earlier one, and turn finished executions into learning events.

Kept apart from ``application.py`` so that file only gains two calls.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.events import Event
from baton_common.plans import PlanInvalid, validate_plan
from baton_common.workspaces import policy_problems

from baton_planner.domain import PlanRecord
from baton_planner.planners import Answer, answer
from baton_planner.semantic import EmbeddingUnavailable

if TYPE_CHECKING:
    from baton_planner.application import PlannerApp

log = logging.getLogger(__name__)

# What the learning engine reads besides requests and successes: each plan's tools (started)
# and each step's outcome.
LEARNING_SUBJECTS = ["*.execution.started", "*.execution.step_succeeded", "*.execution.step_failed"]
REUSED = "reused"  # the planner name on a PlanProposed that reused a learned plan


async def plan_or_reuse(app: PlannerApp, request: c.ExecutionRequested) -> Answer:
    """A learned plan if one fits (still valid here), else a fresh one; either as failure
    patterns call for (retries, or another tool first: ``rewrite.py``)."""
    text = request.request or ""
    learner = app.learner
    if learner is not None:
        try:
            found = await learner.recall(request.workspace_id, text)
        except EmbeddingUnavailable as exc:
            log.warning("plan reuse skipped: %s", exc)
            found = None
        if found is not None and await _still_valid(app, request, found.plan):
            log.info("reusing the plan of %r (similarity %.3f)", found.request, found.score)
            return Answer(learner.advise(request.workspace_id, found.plan, app.catalogue), REUSED)
    made = await answer(app.planner, text, request.inputs)
    if learner is not None:
        made = replace(made, plan=learner.advise(request.workspace_id, made.plan, app.catalogue))
    return made


async def _still_valid(
    app: PlannerApp, request: c.ExecutionRequested, plan: dict[str, Any]
) -> bool:
    try:
        checked = validate_plan(plan, app.catalogue, request.inputs)
    except PlanInvalid:
        return False  # the catalogue or the inputs changed since it worked
    if app.policy_of is not None:
        policy = await asyncio.to_thread(app.policy_of, request.workspace_id)
        if policy_problems(checked, policy):
            return False
    return True


async def learn_from(app: PlannerApp, deliveries: list[Delivery]) -> list[Event]:
    """Learning events for a batch: plans that worked, tool outcomes, failure patterns."""
    assert app.learner is not None
    events = [d.event for d in deliveries]
    new = app.learner.observe(events)
    for e in events:
        if isinstance(e, c.ExecutionSucceeded) and e.aggregate_id not in app.given:
            history = await asyncio.to_thread(app.store.load, e.aggregate_id)
            record = PlanRecord.rebuild(e.aggregate_id, history)
            if record is None or not record.request or not record.plan:
                continue  # a plan given directly: nothing was planned from words
            try:
                version = app.learner.version_of(e.workspace_id, record.request)
                new.append(
                    await app.learner.learned(
                        e.aggregate_id, e.workspace_id, record.request, record.plan, version
                    )
                )
            except EmbeddingUnavailable as exc:
                log.warning("plan not learned (embedding unavailable): %s", exc)
    return new


def load_learning(app: PlannerApp, batch: int = 5000) -> int:
    """Fold every learning event in the planner's store back in (at start)."""
    assert app.learner is not None
    position, count = 0, 0
    while True:
        rows = app.store.notifications(position, batch)
        for _, event in rows:
            if event.type.startswith("learning."):
                app.learner.apply(event)
                count += 1
        if len(rows) < batch:
            return count
        position = rows[-1][0]
