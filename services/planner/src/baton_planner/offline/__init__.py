"""The offline planner package: the names planners, the service and the gateway use."""

import json
from collections.abc import Mapping
from typing import Any

from baton_planner.offline.explaining import Draft, PlanRefused, StepExplanation, render
from baton_planner.offline.matching import ToolIndex, stats_rank
from baton_planner.offline.memory import PlanMemory
from baton_planner.offline.parsing import Task, split_tasks
from baton_planner.offline.planner import OfflinePlanner
from baton_planner.offline.words import stem


def describe(plan: Mapping[str, Any]) -> str:
    """A one-line-per-step text view of plan data (for logs and debugging)."""
    return "\n".join(
        f"{s['id']:<24} {s['tool']:<14} after: {', '.join(s.get('depends_on', [])) or '-'}  "
        f"{json.dumps(s.get('input', {}))}"
        for s in plan.get("steps", [])
    )


__all__ = [
    "Draft",
    "OfflinePlanner",
    "PlanMemory",
    "PlanRefused",
    "StepExplanation",
    "Task",
    "ToolIndex",
    "describe",
    "render",
    "split_tasks",
    "stats_rank",
    "stem",
]
