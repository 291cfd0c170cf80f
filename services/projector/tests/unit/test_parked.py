"""Which execution views the projector keeps in memory between batches: not those of executions
that wait for a person or a timer (10,000 such would hold 10,000 views), but those whose next
events come at once."""

from __future__ import annotations

from typing import Any

from baton_projector.projections import _parked


def view(status: str, *steps: tuple[str, str]) -> dict[str, Any]:
    return {"status": status, "steps": {t + s: {"tool": t, "status": s} for t, s in steps}}


def test_an_execution_at_a_gate_or_asleep_is_parked() -> None:
    assert _parked(view("running", ("mock.critical", "waiting_approval"), ("x", "pending")))
    assert _parked(view("running", ("time.sleep", "running"), ("mock.agent", "succeeded")))
    assert _parked(view("paused", ("time.sleep", "running")))
    assert _parked(view("waiting"))  # the planner's question


def test_an_execution_with_a_step_at_a_worker_or_between_commits_is_not() -> None:
    assert not _parked(view("running", ("time.sleep", "running"), ("http.request", "running")))
    assert not _parked(view("running", ("mock.agent", "succeeded"), ("mock.agent", "pending")))
    assert not _parked(view("requested"))
    assert not _parked(view("succeeded", ("time.sleep", "succeeded")))
