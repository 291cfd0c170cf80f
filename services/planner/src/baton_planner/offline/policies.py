"""Step policies said in words: "retry 5 times", "keep retrying … until it answers", "with a
timeout of 30 seconds". They are taken out of the task's text (they say how, not what) and become
the step's ``retry`` and ``timeout``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from baton_planner.offline import words as w

_RETRY_TIMES = re.compile(
    r"(?!(?<=[\s,])[\s,])[\s,]*\b(?:and\s+)?(?:retry|retrying|try)\s+(?:it\s+)?(?:up\s+to\s+)?(\d+)\s+times\b",
    re.I,
)
# "until it answers", "until they are up": how long to keep trying, said in words
_UNTIL_IT_WORKS = r"until\s+(?:it|they)\s+(?:answers?|responds?|works?|succeeds?|is\s+up)"
_KEEP_RETRYING = re.compile(
    rf"^(?:keep\s+(?:on\s+)?(?:retrying|trying)|retry)\s+(?P<rest>.+?)(?:\s+{_UNTIL_IT_WORKS})?$",
    re.I,
)
_UNTIL = re.compile(rf"{w.BLANKS_START}\s+{_UNTIL_IT_WORKS}\b", re.I)
_TIMEOUT = re.compile(
    r"(?!(?<=[\s,])[\s,])[\s,]*\b(?:with\s+a\s+)?(?:timeout\s+(?:of\s+)?|time\s*out\s+after\s+|within\s+)"
    r"(\d+(?:\.\d+)?\s*(?:ms|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?))\b",
    re.I,
)
_KEEP_TRYING_ATTEMPTS = 10
_MAX_TIMEOUT = 3600.0  # a step timeout said in words is capped at an hour, as before


@dataclass
class Policies:
    """What the words said about how to run the task's steps."""

    attempts: int | None = None
    timeout: float | None = None

    def step_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.attempts is not None:
            fields["retry"] = {"max_attempts": max(1, min(100, self.attempts))}
        if self.timeout is not None:
            fields["timeout"] = max(0.001, min(86400.0, self.timeout))
        return fields

    def describe(self) -> str:
        parts = []
        if self.attempts is not None:
            parts.append(f"up to {self.attempts} attempts")
        if self.timeout is not None:
            parts.append(f"a {self.timeout:g} s timeout")
        return " and ".join(parts)


def take_policies(text: str) -> tuple[str, Policies]:
    """The task's text without its policy words, and the policies."""
    found = Policies()
    if match := _RETRY_TIMES.search(text):
        found.attempts = int(match[1]) + 1  # "retry 3 times": the first try and three more
        text = (text[: match.start()] + text[match.end() :]).strip()
    elif match := _KEEP_RETRYING.match(text):
        found.attempts = _KEEP_TRYING_ATTEMPTS
        rest = _UNTIL.sub("", match["rest"]).strip()
        text = rest if w.lead_verb(rest) else f"fetch {rest}" if w.urls(rest) else rest
    if match := _TIMEOUT.search(text):
        found.timeout = min(_MAX_TIMEOUT, w.seconds(match[1]))
        text = (text[: match.start()] + text[match.end() :]).strip()
    return text, found
