"""What the planner learns from finished executions (owned by the planner, kept as events so a
restart, even a kill -9, keeps it all): proven plans with the request's embedding, tools'
outcomes, and failure patterns."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import Field

from baton_common.events import Event

Json = dict[str, Any]


class PlanLearned(Event):
    """A plan made for a request in words worked: a later request that means the same gets it
    (after validation again). ``vector`` is the request's embedding by ``embedder``."""

    TYPE = "learning.plan_learned"

    execution_id: UUID
    request: str
    plan: Json
    embedder: str
    vector: list[float] = Field(default_factory=list)


class ToolOutcomesRecorded(Event):
    """Steps' outcomes per tool over one batch: ``{tool: {ok, failed, ms}}``."""

    TYPE = "learning.tool_outcomes_recorded"

    outcomes: dict[str, dict[str, float]] = Field(default_factory=dict)


class FailurePatternDetected(Event):
    """A tool keeps failing with the same class of error: ``count`` times so far. From now on
    the planner gives that tool's steps a retry policy when the failures were retried
    (``retryable``), else (a retry cannot fix them) an alternative tool when one exists."""

    TYPE = "learning.failure_pattern_detected"

    tool: str
    error_class: str
    count: int
    example: str
    execution_ids: list[UUID] = Field(default_factory=list)
    advice: str = ""
    # False: the failures were not retried although attempts remained (the tool said a retry
    # cannot help: bad input, 4xx, a missing file). Older events are retryable patterns.
    retryable: bool = True
