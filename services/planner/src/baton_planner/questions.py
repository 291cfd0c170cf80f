"""Questions, not dead ends: a request the planner cannot plan with confidence becomes a question
to the person (a gate of kind ``question`` in the hitl service), and the answer completes it.

What is asked: what the planner understood, what it did not, its suggestion, and the closest
tools for each unclear task (choices, with their descriptions). What an answer does: the request
is planned again, first with the unclear words replaced by the answer (the task reworded), then
with the answer added (a missing value), then the answer alone (the request reworded); the first
that plans wins. An answer that names one of the choices (a tool) puts that tool's name before
the unclear task. The plan carries the original words, so learning maps them to it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton_common import contracts as c
from baton_common.approvals import MAX_QUESTIONS, question_id_for, seconds_of
from baton_common.catalogue import Catalogue

from baton_planner.offline.explaining import PlanRefused
from baton_planner.offline.matching import ToolIndex, task_words

CHOICES_PER_TASK = 3
# Offered when no tool's words meet the task's at all: the tools most requests end in.
GENERAL_TOOLS = ("llm.generate", "text.template", "files.write", "http.request")
DEFAULT_DEADLINE_S = 86_400.0  # a day: then the execution fails with "no answer within 1440 min"


class QuestionsConfigError(ValueError):
    """A question setting the planner cannot use (it stops at start with this message)."""


@dataclass(frozen=True)
class QuestionSettings:
    """``BATON_PLAN_QUESTIONS`` (on; ``off``: a refusal fails the execution, as before) and
    ``BATON_PLAN_QUESTION_DEADLINE`` (seconds or an ISO-8601 duration; ``none``: no deadline)."""

    enabled: bool = True
    deadline: float | None = DEFAULT_DEADLINE_S
    rounds: int = MAX_QUESTIONS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> QuestionSettings:
        env = os.environ if env is None else env
        switch = env.get("BATON_PLAN_QUESTIONS", "on").strip().lower()
        if switch not in ("on", "off", "1", "0", "true", "false"):
            raise QuestionsConfigError(f"BATON_PLAN_QUESTIONS: on or off, not {switch!r}")
        raw = env.get("BATON_PLAN_QUESTION_DEADLINE", "").strip()
        return cls(enabled=switch in ("on", "1", "true"), deadline=_deadline(raw))


def _deadline(raw: str) -> float | None:
    if not raw:
        return DEFAULT_DEADLINE_S
    if raw.lower() == "none":
        return None
    try:
        seconds = seconds_of(raw)
    except ValueError as exc:
        raise QuestionsConfigError(f"BATON_PLAN_QUESTION_DEADLINE: {exc}") from None
    if seconds <= 0:
        raise QuestionsConfigError("BATON_PLAN_QUESTION_DEADLINE: more than zero seconds")
    return seconds


def choices(refused: PlanRefused, catalogue: Catalogue) -> list[dict[str, Any]]:
    """The closest tools for each task the planner could not match, with their descriptions."""
    if not refused.unclear:
        return []
    index = ToolIndex(catalogue)
    found: list[dict[str, Any]] = []
    general = [(0.0, spec) for name in GENERAL_TOOLS if (spec := catalogue.get(name))]
    for task in refused.unclear:
        ranked = index.ranked(task_words(task), {})[:CHOICES_PER_TASK] or general
        for score, spec in ranked:
            found.append(
                {"task": task, "tool": spec.name, "description": spec.description, "score": score}
            )
    return found


def question_text(refused: PlanRefused) -> str:
    """The question in words: what is unclear and how to answer (a model's own, if it asked)."""
    if refused.question:
        return refused.question
    if refused.unclear:
        tasks = "; ".join(repr(t) for t in refused.unclear)
        return f"What should be done for {tasks}? Say it in other words (or pick a tool below)."
    missing = "; ".join(refused.not_understood)
    return f"The request needs more to be planned: {missing}. What should it be?"


def ask(
    refused: PlanRefused,
    about: c.PlanQuestionAsked | c.ExecutionRequested,
    wording: str,
    settings: QuestionSettings,
    catalogue: Catalogue,
    planner: str,
) -> dict[str, Any]:
    """The fields of the next ``PlanQuestionAsked`` about a request (or an earlier question)."""
    earlier = about if isinstance(about, c.PlanQuestionAsked) else None
    execution_id = earlier.execution_id if earlier else about.aggregate_id
    round_ = earlier.round + 1 if earlier else 1
    return {
        "execution_id": execution_id,
        "approval_id": question_id_for(execution_id, round_),
        "round": round_,
        "question": question_text(refused),
        "understood": refused.understood,
        "not_understood": refused.not_understood,
        "unclear": refused.unclear,
        "suggestion": refused.suggestion,
        "choices": choices(refused, catalogue),
        "deadline": settings.deadline,
        "planner": planner,
        "request": about.request,
        "inputs": about.inputs,
        "answers": earlier.answers if earlier else [],
        "wording": wording,
        "review_plan": about.review_plan,
        "simulation": about.simulation,
    }


def wordings(question: c.PlanQuestionAsked, answer: str) -> list[str]:
    """The request completed by an answer, most specific first (see the module's text)."""
    base = question.wording or question.request or ""
    picked = {str(x.get("tool")): str(x.get("task")) for x in question.choices}
    if answer in picked:  # a tool chosen by name: its name's words lead the unclear task
        task = picked[answer]
        said = f"{answer.replace('.', ' ').replace('_', ' ')} {task}"
        return [base.replace(task, said, 1) if task in base else said]
    found = [base.replace(task, answer, 1) for task in question.unclear if task and task in base]
    found += [f"{base.rstrip(' .')} {answer}", answer]
    return list(dict.fromkeys(t for t in found if t.strip()))
