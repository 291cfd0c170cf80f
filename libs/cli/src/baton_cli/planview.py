"""`baton plan`: the drafted plan as a person reads it, each step with the words that led to it.

The gateway's ``/v1/plans/draft`` reply carries the plan and an ``explanation`` per step; this
module only lays them out (``--json`` prints the reply's plan and explanation as they are).
"""

from __future__ import annotations

import json
from typing import Any


def machine(data: dict[str, Any]) -> str:
    """What ``--json`` prints: the plan and why each step is there."""
    keep = ("planner", "order", "plan", "explanation")
    return json.dumps({k: data[k] for k in keep if k in data}, indent=2, ensure_ascii=False)


def readable(data: dict[str, Any]) -> str:
    plan = data.get("plan", {})
    why = {e.get("step"): e for e in data.get("explanation", [])}
    lines = [
        f"# planner: {data.get('planner', '?')}; run order: {' → '.join(data.get('order', []))}"
    ]
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
