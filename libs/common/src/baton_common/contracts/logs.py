"""Live logs of steps: the lines a tool (or the worker around it) writes while a step runs.

A worker sends them in small chunks as it goes, each chunk one event whose id is derived from
(execution, step, attempt, kind, chunk), so a re-sent chunk is dropped by the server like any
other duplicate. They are not part of the execution's state: the projector keeps them for
``GET /v1/executions/{id}/logs`` and ``baton logs``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from baton_common.events import Event

LogLevel = Literal["debug", "info", "warning", "error"]


class LogLine(BaseModel):
    """One line: when, how loud, what; ``cut`` when it was longer than the line limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: datetime
    level: LogLevel = "info"
    message: str
    cut: bool = False


class StepLogged(Event):
    """A chunk of an attempt's log lines (``aggregate_id`` is the execution). ``dropped`` counts
    the lines the step's limits threw away since the previous chunk: readers show a marker."""

    TYPE = "log.step_logged"

    step_id: str
    attempt: int
    kind: str = "run"
    tool: str = ""
    chunk: int = Field(ge=0)
    lines: list[LogLine] = Field(default_factory=list)
    dropped: int = Field(0, ge=0)
    limit: str | None = None  # which limit dropped them ("1000 lines per attempt", …)
