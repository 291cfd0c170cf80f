"""The planner's aggregate: one Plan per execution, proposed once or failed once (after as many
questions to the person as it took)."""

from __future__ import annotations

from typing import Any

from baton_common import contracts as c
from baton_common.aggregate import Aggregate


class PlanRecord(Aggregate):
    """The plan made for one execution (aggregate id = execution id)."""

    status = "none"
    plan: dict[str, Any] | None = None
    request: str | None = None
    question: c.PlanQuestionAsked | None = None  # the open question (status "asking")

    def on_question_asked(self, e: c.PlanQuestionAsked) -> None:
        self.status, self.question, self.request = "asking", e, e.request

    def on_proposed(self, e: c.PlanProposed) -> None:
        self.status, self.plan, self.request = "proposed", e.plan, e.request

    def on_failed(self, _e: c.PlanningFailed) -> None:
        self.status = "failed"
