"""A pure step the executor ran is one event, ``step_succeeded`` with its call: every fold that
opens an attempt on ``step_dispatched`` reads the same attempt from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from baton_common import contracts as c
from baton_common import views
from baton_common.divergence import divergences
from baton_common.simulation import recordings_from

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PLAN = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "t"}}]}


def one_event(eid: Any, attempt: int = 1, **call: Any) -> c.StepSucceeded:
    return c.StepSucceeded(
        aggregate_id=eid,
        aggregate_version=2,
        occurred_at=T0 + timedelta(milliseconds=5),
        step_id="a",
        attempt=attempt,
        output={"result": "done: t"},
        duration_ms=0.4,
        call=c.StepCall(
            tool="mock.agent", input={"task": "t"}, idempotency_key=f"{eid}:a", timeout_s=30,
            **call,
        ),
    )  # fmt: skip


def started(eid: Any, simulation: dict[str, Any] | None = None) -> c.ExecutionStarted:
    return c.ExecutionStarted(aggregate_id=eid, aggregate_version=1, occurred_at=T0, plan=PLAN,
                              simulation=simulation)  # fmt: skip


def test_the_dispatch_it_stands_for_is_the_one_a_worker_step_records() -> None:
    eid = uuid4()
    e = one_event(eid)
    d = c.dispatch_of(e)
    assert d is not None and d.inline and d.type == "execution.step_dispatched"
    assert (d.step_id, d.attempt, d.tool, d.input, d.idempotency_key, d.timeout_s) == (
        "a", 1, "mock.agent", {"task": "t"}, f"{eid}:a", 30,
    )  # fmt: skip
    assert d.subject() == "baton.default.execution.step_dispatched.inline"  # never a task
    assert c.dispatch_of(e) == d  # the same id every time: idempotent projections
    assert [x.type for x in c.unfolded([started(eid), e])] == [
        "execution.started", "execution.step_dispatched", "execution.step_succeeded",
    ]  # fmt: skip
    plain = c.StepSucceeded(aggregate_id=eid, step_id="a", attempt=1)
    assert c.dispatch_of(plain) is None and list(c.unfolded([plain])) == [plain]
    assert c.StepSucceeded.model_validate_json(e.to_json()) == e  # the call survives the bus


def test_the_view_shows_the_attempt_and_counts_one_event() -> None:
    eid = uuid4()
    view = views.fold([started(eid), one_event(eid)])
    assert view is not None
    step = view["steps"]["a"]
    assert (step["status"], step["attempts"], step["tool"]) == ("succeeded", 1, "mock.agent")
    assert step["started_at"] == step["finished_at"] == (T0 + timedelta(milliseconds=5)).isoformat()
    assert view["events"] == 2  # the replay slider counts stored events


def test_a_simulation_lists_the_call_and_a_replay_finds_its_recording() -> None:
    eid = uuid4()
    dry = {"mode": "dry_run"}
    view = views.fold([started(eid, dry), one_event(eid, simulated={"real": True})])
    assert view is not None
    assert view["simulation"]["calls"] == [
        {"step_id": "a", "attempt": 1, "kind": "run", "tool": "mock.agent",
         "input": {"task": "t"}, "call": "real"},
    ]  # fmt: skip
    [rec] = recordings_from([started(eid), one_event(eid)])
    assert (rec.step_id, rec.tool, [(r.attempt, r.ok) for r in rec.results]) == (
        "a", "mock.agent", [(1, True)],
    )  # fmt: skip


def test_a_rerun_that_skips_the_step_diverges_from_its_one_event() -> None:
    eid, again = uuid4(), uuid4()
    recorded = [started(eid), one_event(eid)]
    rerun = [started(again), c.StepSkipped(aggregate_id=again, step_id="a", reason="no")]
    found = {d["divergence"] for d in divergences(recorded, rerun)}
    assert "not_run" in found
