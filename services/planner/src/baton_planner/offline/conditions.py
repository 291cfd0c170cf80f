"""Conditions ("if the site is down then …") as a step's ``when`` expression over the output of
the step that checks, and approvals ("once ann approves") as a step's gate."""

from __future__ import annotations

import json
import re
from typing import Any

from baton_common.catalogue import ToolSpec

from baton_planner.offline.matching import is_query, url_field

_DOWN = re.compile(
    r"(?:\b(?:is|are)|'s)\s+(?:down|unreachable|not\s+(?:ok|up|reachable|available)|broken|offline)\b"
    r"|\b(?:fails?|failed|errors?|returns?\s+an\s+error)\b",
    re.I,
)
_UP = re.compile(
    r"(?:\b(?:is|are)|'s)\s+(?:up|ok|okay|reachable|available|online|healthy)\b"
    r"|\b(?:succeeds?|works|responds)\b",
    re.I,
)
_STATUS = re.compile(
    r"\b(?:status|returns?|responds?\s+with|answers?|comes?\s+back(?:\s+with)?|gives?(?:\s+back)?|"
    r"throws|(?:status\s+)?code)\D{0,12}?(\d{3})\b",
    re.I,
)
_COMPARE = [
    (
        re.compile(
            r"\b(?:is\s+)?(?:above|over|greater\s+than|more\s+than|higher\s+than|exceeds)\s+"
        ),
        ">",
    ),
    (re.compile(r"\b(?:is\s+)?(?:below|under|less\s+than|lower\s+than)\s+"), "<"),
    (re.compile(r"\b(?:is\s+not|isn't|does\s+not\s+equal|!=)\s+"), "!="),
    (re.compile(r"\b(?:is|equals|==|=)\s+"), "=="),
]
_EMPTY = re.compile(r"\b(?:is\s+empty|is\s+missing|is\s+not\s+found|does\s+not\s+exist)\b", re.I)


class UnclearCondition(Exception):
    """A condition the plan cannot test (what a text says needs a model to judge)."""


def when(step_id: str, tool: ToolSpec, condition: str, negated: bool) -> tuple[str, str]:
    """The ``when`` expression for a step that runs if ``condition`` holds, and its reading."""
    expr, reading = _expression(step_id, tool, condition)
    return (f"not {expr}", f"not ({reading})") if negated else (expr, reading)


def _expression(step_id: str, tool: ToolSpec, text: str) -> tuple[str, str]:
    out = f"${{steps.{step_id}.output"
    if url_field(tool) and "status" in tool.output_schema.get("properties", {}):
        status = _STATUS.search(text)
        if status:
            return f"{out}.status}} == {status[1]}", f"the HTTP status is {status[1]}"
        if _DOWN.search(text):
            return f"{out}.status}} >= 400", "the HTTP status is 400 or more"
        if _UP.search(text):
            return f"{out}.status}} < 400", "the HTTP status is below 400"
    primary = f"{out}.{tool.primary_output}}}" if tool.primary_output else f"{out}}}"
    if _EMPTY.search(text):
        found = "found" if is_query(tool) else None
        return (
            (f"not {out}.{found}}}", "the value is not found")
            if found
            else (
                f"not {primary}",
                "the result is empty",
            )
        )
    for pattern, op in _COMPARE:
        match = pattern.search(text)
        if match:
            literal = _literal(text[match.end() :])
            if literal is not None:
                return f"{primary} {op} {literal}", f"the result {op} {literal}"
    if "prompt" in tool.input_schema.get("properties", {}) or "template" in tool.input_schema.get(
        "properties", {}
    ):
        raise UnclearCondition(f"cannot test {text!r}: what a text says is not a value to compare")
    return primary, "the result is true (not empty, not zero, not false)"


def _literal(text: str) -> str | None:
    """The value compared with: a number, a quoted text, true/false, or one word as text."""
    value = text.strip().strip(".,;")
    number = re.match(r"^-?\d+(?:\.\d+)?", value)
    if number:
        return number.group(0)
    quoted = re.match(r"^[\"'“]([^\"'”]*)[\"'”]", value)
    if quoted:
        return json.dumps(quoted[1])
    first = value.split()[:1]
    if not first:
        return None
    if first[0].lower() in ("true", "false", "null"):
        return first[0].lower()
    return json.dumps(first[0])


def approval(who: list[str]) -> dict[str, Any]:
    """The step fields of a gate: named approvers, or anyone whose role may approve."""
    if len(who) > 1:  # "once ann and bob approve": both of them
        return {"approval": {"approvers": who, "min_approvals": len(who)}}
    if who:
        return {"approval": {"approvers": who}}
    return {"requires_approval": True}
