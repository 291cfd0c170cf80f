"""`baton plan`'s first line (which planner and model answered, at what cost) and
`baton plan --compare`'s side-by-side layout, from the gateway's replies."""

from __future__ import annotations

from typing import Any

from baton_cli.planview import answered_by, compared

OFFLINE = {
    "planner": "offline",
    "model": None,
    "plan": {"steps": [{"id": "read", "tool": "files.read", "input": {}}]},
}
LLM = {
    "planner": "openai",
    "model": "qwen2.5:7b",
    "attempts": 2,
    "repairs": 1,
    "usage": {"input_tokens": 2911, "output_tokens": 274, "estimated": False, "cost_usd": 0.0012},
    "plan": {
        "steps": [
            {"id": "read", "tool": "files.read", "input": {}},
            {"id": "sum", "tool": "llm.generate", "input": {}, "depends_on": ["read"]},
        ]
    },
}
DIFF: dict[str, Any] = {
    "added": [{"step": "sum", "tool": "llm.generate"}],
    "removed": [],
    "renamed": [],
    "changed": [],
    "plan": [],
    "summary": {"added": 1, "removed": 0, "renamed": 0, "changed": 0, "unchanged": 1},
}


def test_the_first_line_says_who_answered_in_how_many_attempts_and_at_what_cost() -> None:
    assert answered_by(OFFLINE) == "planner: offline"
    said = answered_by(LLM)
    assert said == (
        "planner: openai, model: qwen2.5:7b, 2 attempt(s) (1 repair(s)), "
        "tokens 2911 in / 274 out, $0.001200"
    )
    estimated = {**LLM, "usage": {**LLM["usage"], "estimated": True, "cost_usd": None}}
    assert answered_by(estimated).endswith("tokens ~2911 in / ~274 out")
    assert answered_by({**LLM, "remembered": True}).endswith("(a plan it learned, no model call)")


def test_compare_puts_the_plans_side_by_side_then_the_differences() -> None:
    out = compared({"offline": OFFLINE, "llm": LLM, "differences": DIFF}).splitlines()
    assert out[0].startswith("OFFLINE  planner: offline") and "| LLM  planner: openai" in out[0]
    assert out[1].startswith("1. read → files.read") and out[1].endswith("| 1. read → files.read")
    assert out[2].strip() == "| 2. sum → llm.generate" and out[3].strip() == "|    after read"
    assert "differences (offline → LLM):" in out and "  + sum (llm.generate)" in out
    assert out[-1] == "  1 added, 0 removed, 0 renamed, 0 changed, 1 unchanged"


def test_a_side_without_a_plan_shows_why_and_no_differences() -> None:
    failed = {"planner": "openai", "error": "the model server cannot be reached"}
    out = compared({"offline": OFFLINE, "llm": failed, "differences": None})
    assert "| no plan: the model server cannot be" in out
    assert out.endswith("no differences to show: one planner gave no plan")
