"""Why each step is in the plan (which words led to which tool), and the honest refusal of a
request the planner cannot plan with confidence: what it understood, what it did not, what to try.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from baton_planner.planners import PlanningError


@dataclass
class StepExplanation:
    """One step's reason: the words of the request behind it and the rule that placed it."""

    step: str
    tool: str
    task: str  # the clause of the request this step serves
    words: list[str] = field(default_factory=list)  # request words that matched the tool
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Draft:
    """A plan and the explanation of each of its steps, in step order."""

    plan: dict[str, Any]
    explanation: list[StepExplanation]

    def explanation_data(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.explanation]


class PlanRefused(PlanningError):
    """The request is not clear enough to plan: no plan beats a silently wrong one."""

    def __init__(
        self,
        understood: list[str],
        not_understood: list[str],
        suggestion: str,
        unclear: list[str] | None = None,
        *,
        question: str | None = None,
        problems: list[str] | None = None,
    ) -> None:
        self.understood = understood
        self.not_understood = not_understood
        self.suggestion = suggestion
        self.unclear = unclear or []  # the tasks' own words that fit no tool (a question's choices)
        self.question = question  # a model's own question to the person, when it asked one
        parts = ["cannot plan this request with confidence."]
        if understood:
            parts.append("Understood: " + "; ".join(understood) + ".")
        parts.append("Not understood: " + "; ".join(not_understood) + ".")
        parts.append(f"Suggestion: {suggestion}")
        super().__init__(" ".join(parts), problems=problems or ())

    def details(self) -> dict[str, Any]:
        """The refusal as data (the API's 422 body carries it next to ``detail``)."""
        return {
            "understood": self.understood,
            "not_understood": self.not_understood,
            "suggestion": self.suggestion,
        }


def describe_words(words: list[str]) -> str:
    return ", ".join(f"'{x}'" for x in words) if words else "no particular word"


def render(explanation: list[StepExplanation]) -> str:
    """A readable text: one block per step (what the CLI prints from the same data)."""
    lines = []
    for e in explanation:
        lines.append(f"{e.step}  →  {e.tool}")
        lines.append(f"    from: {e.task!r}")
        lines.append(f"    why:  {e.why}")
    return "\n".join(lines)
