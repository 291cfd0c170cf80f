"""Simulated executions in the executor: directives on dispatched tasks, no gates, stand-ins."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.simulation import MockProfile, Simulation
from baton_executor.stand_ins import simulated, stand_in_for
from baton_executor.tools.base import ToolError

from .test_execution import Harness

PLAN = {
    "steps": [
        {"id": "look", "tool": "mock.agent", "input": {"task": "look"}},
        {"id": "post", "tool": "http.request", "depends_on": ["look"],
         "input": {"url": "http://127.0.0.1:9/x", "method": "POST", "json": {"r": "${steps.look.output.result}"}},
         "compensate": {"tool": "http.request", "input": {"url": "http://127.0.0.1:9/x", "method": "DELETE"}}},
        {"id": "pay", "tool": "mock.critical", "depends_on": ["post"], "input": {"action": "pay"}},
    ]
}  # fmt: skip


def _start(h: Harness, simulation: Simulation) -> Any:
    return h.start(PLAN, simulation=simulation.model_dump(mode="json"))


def test_a_dry_run_runs_reads_simulates_writes_and_asks_nobody() -> None:
    h = Harness()
    _start(h, Simulation())
    [look] = h.dispatched()
    assert look.simulated is None  # a read runs for real
    h.finish(look, output={"result": "r1"})
    post = h.dispatched()[-1]
    assert post.simulated == {
        "mode": "dry_run",
        "output": {"status": 200, "headers": {}, "text": "", "json": None},
    }
    assert post.input["json"] == {"r": "r1"}  # resolved as it would have been sent
    h.finish(post, output=post.simulated["output"])
    pay = h.dispatched()[-1]
    assert not any(isinstance(e, c.StepApprovalRequested) for e in h.events)
    assert pay.simulated == {"mode": "dry_run", "approval_skipped": "mock.critical is a critical tool",
                             "output": {"done": "pay", "calls": 0}}  # fmt: skip
    h.finish(pay, output=pay.simulated["output"])
    assert isinstance(h.events[-1], c.ExecutionSucceeded)
    [started] = [e for e in h.events if isinstance(e, c.ExecutionStarted)]
    assert started.simulation is not None and started.simulation["mode"] == "dry_run"


def test_a_rebuilt_simulation_decides_the_same() -> None:
    h = Harness()
    eid = _start(h, Simulation(run_reads=False))
    [look] = h.dispatched()
    assert look.simulated is not None and look.simulated["output"] == {"result": None}
    h.app.invalidate()  # the next result is handled by an execution rebuilt from the store
    h.finish(look, output={"result": "r1"})
    assert h.dispatched()[-1].simulated is not None
    assert h.app.load(eid).simulation == Simulation(run_reads=False)  # type: ignore[union-attr]


def test_a_mock_failing_for_good_compensates_with_a_simulated_call() -> None:
    h = Harness()
    profile = MockProfile.model_validate(
        {"seed": 7, "steps": {"pay": {"failure_rate": 1, "retryable": False}}}
    )
    _start(h, Simulation(mode="mock", mock=profile))
    h.finish(h.dispatched()[0], output={"result": "r"})
    h.finish(h.dispatched()[-1], output={})
    pay = h.dispatched()[-1]
    assert pay.simulated is not None and pay.simulated["mock"]["failure_rate"] == 1
    h.finish(pay, ok=False, retryable=False)
    undo = h.dispatched()[-1]
    assert (undo.step_id, undo.kind, undo.input["method"]) == ("post", "compensate", "DELETE")
    assert undo.simulated is not None and "output" in undo.simulated


def _task(
    simulated: dict[str, Any] | None, attempt: int = 1, tool: str = "http.request"
) -> c.StepDispatched:
    return c.StepDispatched(
        aggregate_id=uuid4(), step_id="s", attempt=attempt, tool=tool,
        input={"url": "http://x/"}, idempotency_key="k", timeout_s=5, simulated=simulated,
    )  # fmt: skip


def test_stand_ins_answer_without_the_tool() -> None:
    assert not simulated(_task(None)) and stand_in_for(_task({"real": True})) is None
    assert asyncio.run(stand_in_for(_task({"output": {"status": 200}}))) == {"status": 200}  # type: ignore[arg-type]
    recorded = {"recorded": {"attempt": 1, "ok": False, "error": "503", "retryable": True}}
    with pytest.raises(ToolError, match="503"):
        asyncio.run(stand_in_for(_task(recorded)))  # type: ignore[arg-type]


def test_a_mock_is_deterministic_given_its_seed() -> None:
    mock = {
        "latency": {"mean_ms": 1},
        "failure_rate": 0.5,
        "fail_first": 1,
        "error": "x",
        "retryable": True,
    }

    def outcome(attempt: int, seed: Any) -> bool:
        d = {
            "mode": "mock",
            "mock": mock,
            "seed": seed,
            "draw": f"s:run:{attempt}",
            "attempt": attempt,
            "output": 1,
        }
        try:
            asyncio.run(stand_in_for(_task(d, attempt)))  # type: ignore[arg-type]
        except ToolError:
            return False
        return True

    first = [outcome(a, 42) for a in range(1, 30)]
    assert first == [outcome(a, 42) for a in range(1, 30)]
    assert first[0] is False and True in first and False in first[1:]


def test_a_replay_retries_at_once() -> None:
    from baton_common.simulation import RecordedResult, Recording

    failed = RecordedResult(attempt=1, ok=False, error="503", retryable=True)
    rec = Recording(step_id="look", tool="mock.agent", input={"task": "look"}, results=[failed])
    h = Harness()
    _start(h, Simulation(mode="replay", recordings=[rec]))
    [look] = h.dispatched()
    assert look.simulated is not None and look.simulated["recorded"]["error"] == "503"
    h.finish(look, ok=False)
    [retry] = [e for e in h.events if isinstance(e, c.StepFailed)]
    assert retry.retry_at == h.now  # no backoff: the answer is recorded
