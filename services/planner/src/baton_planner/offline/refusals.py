"""The refusals the offline planner gives, each saying what it understood, what it did not and
what to try: a clear answer instead of a plan that would do the wrong thing."""

from __future__ import annotations

from baton_planner.offline.explaining import PlanRefused
from baton_planner.offline.filling import MissingInput
from baton_planner.offline.matching import Match

SUGGESTION = (
    "say each task with a verb and what it works on, e.g. 'fetch https://…', 'read notes.md', "
    "'summarise it', 'save it to out.md'; join tasks with 'then'"
)


def unmatched(texts: list[str], matches: list[tuple[Match | None, str]]) -> PlanRefused:
    """Some tasks fit no tool with confidence."""
    pairs = list(zip(texts, matches, strict=True))
    understood = [f"{t!r} → {m.tool.name}" for t, (m, _) in pairs if m is not None]
    not_understood = [f"{t!r} ({why})" for t, (m, why) in pairs if m is None]
    unclear = [t for t, (m, _) in pairs if m is None]
    return PlanRefused(understood, not_understood, SUGGESTION, unclear)


def dangling(text: str) -> PlanRefused:
    """The first task points at results that nothing makes."""
    return PlanRefused(
        [],
        [f"{text!r}: it points at results, but nothing comes before it"],
        "say what it works on (a file, a URL, an earlier task), or pass it as an input",
    )


def condition(done: list[str], reason: str) -> PlanRefused:
    return PlanRefused(
        done,
        [reason],
        "make the condition a value to compare, e.g. 'if the status field of https://… is "
        "'ok'', or split the request in two",
    )


def missing(done: list[str], text: str, exc: MissingInput) -> PlanRefused:
    """A tool requires a value the words do not give."""
    times = " (times as 2030-01-02T10:00Z)" if {"start", "end"} & set(exc.fields) else ""
    return PlanRefused(
        done,
        [f"{text!r}: {exc} and the words do not say it"],
        f"say {', '.join(exc.fields)} in the request{times}, or pass it as an input",
    )


def vague(text: str) -> PlanRefused:
    """The task names nothing to act on ("schedule something")."""
    return PlanRefused(
        [],
        [f"{text!r}: it names no thing to act on"],
        "say what, e.g. 'schedule a 30 minute review with ann on friday'",
    )
