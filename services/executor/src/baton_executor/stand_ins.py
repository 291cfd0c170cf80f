"""What a worker runs instead of a tool for a simulated call (a dry run, a mock, a replay).

The executor wrote the decision on the task (``StepDispatched.simulated``, see
``baton_common.simulation``); here it is carried out on the real worker path, with the same
timeouts, results and retries as a real call. A mock's latency and failure come from its seed and
the attempt alone, so a re-delivered task (a worker killed mid-call) behaves the same again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.simulation import sample_mock

from baton_executor.tools.base import ToolError


def simulated(task: c.StepDispatched) -> bool:
    """Whether a stand-in answers this task (False: the real tool runs)."""
    return task.simulated is not None and not task.simulated.get("real")


def stand_in_for(task: c.StepDispatched) -> Coroutine[Any, Any, Any] | None:
    """The simulated call for this task, or None when the real tool runs."""
    return _simulated(task, task.simulated or {}) if simulated(task) else None


async def _simulated(task: c.StepDispatched, plan: dict[str, Any]) -> Any:
    _check_input(task)
    if "recorded" in plan:
        recorded = plan["recorded"]
        if not recorded["ok"]:
            raise ToolError(recorded.get("error") or "failed", retryable=recorded["retryable"])
        return recorded.get("output")
    if "mock" in plan:
        latency_s, fails = sample_mock(plan, str(task.aggregate_id))
        await asyncio.sleep(latency_s)
        if fails:
            raise ToolError(plan["mock"]["error"], retryable=plan["mock"]["retryable"])
    return plan.get("output")


def _check_input(task: c.StepDispatched) -> None:
    """A simulated call still refuses an input the real tool would refuse."""
    spec = DEFAULT_CATALOGUE.get(task.tool)
    if spec is None:
        return
    errors = sorted(spec.input_validator().iter_errors(task.input), key=str)
    if errors:
        path = ".".join(str(p) for p in errors[0].absolute_path) or "input"
        raise ToolError(
            f"input does not fit {spec.name}: {path}: {errors[0].message}", retryable=False
        )
