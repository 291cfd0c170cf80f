"""`baton plan`: the drafted plan as a person reads it, each step with the words that led to it,
and which planner (and model) made it; `baton plan --compare`: the offline planner's plan and the
LLM planner's side by side, with their differences.

The gateway's ``/v1/plans/draft`` reply carries the plan and an ``explanation`` per step,
``/v1/plans/compare`` two of them and a diff; this module only lays them out (``--json`` prints
the reply's fields as they are).
"""

from __future__ import annotations

import json
from itertools import zip_longest
from typing import Any

from baton_cli.plans import diff_lines

COLUMN = 38  # characters of one side of the comparison


def machine(data: dict[str, Any]) -> str:
    """What ``--json`` prints: the plan and why each step is there."""
    keep = ("planner", "model", "attempts", "repairs", "usage", "order", "plan", "explanation")
    return json.dumps({k: data[k] for k in keep if k in data}, indent=2, ensure_ascii=False)


def readable(data: dict[str, Any]) -> str:
    plan = data.get("plan", {})
    why = {e.get("step"): e for e in data.get("explanation", [])}
    lines = [f"# {answered_by(data)}; run order: {' → '.join(data.get('order', []))}"]
    for n, step in enumerate(plan.get("steps", []), 1):
        lines += _step(n, step, why.get(step["id"], {}))
    outputs = plan.get("outputs") or {}
    if outputs:
        lines.append("outputs: " + ", ".join(sorted(outputs)))
    return "\n".join(lines)


def _step(n: int, step: dict[str, Any], note: dict[str, Any]) -> list[str]:
    after = ", ".join(step.get("depends_on", [])) or "nothing (starts at once)"
    lines = [f"\n{n}. {step['id']}  →  {step['tool']}   (after: {after})"]
    if note.get("task"):
        lines.append(f"   from:  {note['task']!r}")
    if note.get("why"):
        lines.append(f"   why:   {note['why']}")
    if step.get("when"):
        lines.append(f"   when:  {step['when']}")
    if step.get("approval") or step.get("requires_approval"):
        lines.append(f"   gate:  {json.dumps(step.get('approval') or 'approval required')}")
    lines.append(f"   input: {json.dumps(step.get('input', {}), ensure_ascii=False)}")
    return lines


def answered_by(data: dict[str, Any]) -> str:
    """Which planner and model answered, in how many attempts, for how many tokens."""
    said = f"planner: {data.get('planner', '?')}"
    if data.get("model"):
        said += f", model: {data['model']}"
    if data.get("remembered"):
        return said + " (a plan it learned, no model call)"
    if data.get("attempts"):
        repairs = data.get("repairs", 0)
        said += f", {data['attempts']} attempt(s) ({repairs} repair(s))"
    usage = data.get("usage") or {}
    if usage:
        approx = "~" if usage.get("estimated") else ""
        said += (
            f", tokens {approx}{usage['input_tokens']} in / {approx}{usage['output_tokens']} out"
        )
        if usage.get("cost_usd") is not None:
            said += f", ${usage['cost_usd']:.6f}"
    return said


def compared(data: dict[str, Any]) -> str:
    """Both plans side by side (step, tool, what it waits for), then how the LLM's differs."""
    sides = [data["offline"], data["llm"]]
    lines = [_cell(f"OFFLINE  {answered_by(sides[0])}") + " | " + f"LLM  {answered_by(sides[1])}"]
    columns = [_column(side) for side in sides]
    for left, right in zip_longest(*columns, fillvalue=""):
        lines.append(_cell(left) + " | " + right)
    diff = data.get("differences")
    if diff is None:
        lines.append("\nno differences to show: one planner gave no plan")
        return "\n".join(lines)
    lines.append("\ndifferences (offline → LLM):")
    return "\n".join(lines + diff_lines(diff))


def _column(side: dict[str, Any]) -> list[str]:
    if "plan" not in side:
        return [f"no plan: {side.get('error', '?')}"[i : i + COLUMN] for i in range(0, 400, COLUMN)]
    rows = []
    for n, step in enumerate(side["plan"].get("steps", []), 1):
        rows.append(f"{n}. {step['id']} → {step['tool']}")
        if step.get("depends_on"):
            rows.append(f"   after {', '.join(step['depends_on'])}")
    return rows


def _cell(text: str) -> str:
    return text[:COLUMN].ljust(COLUMN)
