"""What is wrong with a plan: one problem per step and field, and the error that carries them all.

Every check of a plan reports here (the plan's own shape in ``plans``, its agents in ``agents``, a
workspace's policy in ``workspaces``), so the checks need only this module, not each other.
"""

from __future__ import annotations

from pydantic import BaseModel


class PlanProblem(BaseModel):
    """One reason a plan is rejected: which step, which field, what is wrong."""

    step: str | None
    field: str
    message: str

    def __init__(self, step: str | None, field: str, message: str) -> None:
        super().__init__(step=step, field=field, message=message)

    def __str__(self) -> str:
        where = f"step {self.step!r}" if self.step else "plan"
        return f"{where}, {self.field}: {self.message}"


class PlanInvalid(ValueError):
    """The plan cannot run; ``problems`` lists every reason."""

    def __init__(self, problems: list[PlanProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))
