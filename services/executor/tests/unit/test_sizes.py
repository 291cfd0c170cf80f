"""Sizes in the executor: a tool output over its limit fails the step for good; an execution one
of whose events a relay parked fails with the reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.limits import limits
from baton_common.store import MemoryEventStore
from baton_common.testing import parked_notice
from baton_executor.application import ExecutorApp
from baton_executor.worker import Worker

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CHAIN = {
    "steps": [
        {"id": "a", "tool": "mock.agent", "input": {"task": "one"}},
        {"id": "b", "tool": "mock.agent", "input": {"task": "two"}, "depends_on": ["a"]},
    ]
}


class _Engine:
    """The executor application on the in-memory store, fed as the bus feeds it."""

    def __init__(self) -> None:
        self.store = MemoryEventStore("executor")
        self.app = ExecutorApp(self.store)
        self.events: list[Any] = []

    def feed(self, event: Any) -> list[Any]:
        commit = self.app.handle([Delivery(event)], T0)
        self.store.commit(commit)
        self.events += commit.events
        return list(commit.events)


def _parked(execution_id: UUID) -> c.EventParked:
    reason = "execution.requested is 1.2 MiB, larger than the bus accepts (1 MiB)"
    return parked_notice(
        execution_id, "execution.requested", 1_300_000, reason, "gateway->BATON_EVENTS"
    )


def test_an_execution_whose_request_was_parked_fails_with_the_reason() -> None:
    engine = _Engine()
    eid = uuid4()
    events = engine.feed(_parked(eid))
    assert [type(e) for e in events] == [c.ExecutionFailed]
    assert events[0].aggregate_id == eid
    assert "larger than the bus accepts" in events[0].error
    assert engine.feed(_parked(eid)) == []  # ended: a second notice changes nothing


def test_a_running_execution_stops_starting_steps_and_fails_once_the_running_one_ends() -> None:
    engine = _Engine()
    eid = uuid4()
    engine.feed(
        c.PlanProposed(
            aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=CHAIN, planner="t"
        )
    )
    events = engine.feed(_parked(eid))
    assert [(type(e), e.step_id) for e in events] == [(c.StepSkipped, "b")]
    finished = c.TaskFinished(
        aggregate_id=eid, step_id="a", attempt=1, ok=True, output={"text": "done"}, duration_ms=1
    )
    events = engine.feed(finished)
    failed = [e for e in events if isinstance(e, c.ExecutionFailed)]
    assert len(failed) == 1 and "was parked" in failed[0].error
    dispatched = [e.step_id for e in engine.events if isinstance(e, c.StepDispatched)]
    assert dispatched == ["a"]


def _worker() -> Worker:
    worker = Worker.__new__(Worker)  # only its result-building: no bus, no consumer
    worker.name = "test"
    return worker


def _task() -> c.StepDispatched:
    eid = uuid4()
    return c.StepDispatched(
        aggregate_id=eid,
        aggregate_version=2,
        step_id="fetch",
        attempt=1,
        tool="http.request",
        input={},
        idempotency_key=f"{eid}:fetch",
        timeout_s=30.0,
    )


def test_a_tool_output_over_the_limit_fails_the_step_for_good() -> None:
    big = {"text": "x" * (limits().step_output + 1)}
    result = _worker()._result(_task(), ok=True, output=big)
    assert (result.ok, result.retryable, result.output) == (False, False, None)
    assert result.error is not None
    assert result.error.startswith("output is 524,300 bytes, the limit is 524,288 bytes")
    assert "BATON_MAX_STEP_OUTPUT_BYTES" in result.error


def test_a_tool_output_under_the_limit_is_kept() -> None:
    result = _worker()._result(_task(), ok=True, output={"text": "small"})
    assert (result.ok, result.output) == (True, {"text": "small"})


def _finished(eid: UUID, step: str, output: Any) -> c.TaskFinished:
    return c.TaskFinished(
        aggregate_id=eid, step_id=step, attempt=1, ok=True, output=output, duration_ms=1
    )


def _started(engine: _Engine, plan: dict[str, Any]) -> UUID:
    eid = uuid4()
    engine.feed(
        c.PlanProposed(
            aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=plan, planner="t"
        )
    )
    return eid


PAIR = [
    {"id": "a", "tool": "mock.agent", "input": {"task": "one"}},
    {"id": "b", "tool": "mock.agent", "input": {"task": "two"}},
]
HALF_MB = {"text": "x" * 510_000}  # under the step output limit; two are over one event


def test_outputs_too_large_for_one_event_fail_the_execution_instead_of_its_commit() -> None:
    engine = _Engine()
    eid = _started(engine, {"steps": PAIR})
    engine.feed(_finished(eid, "a", HALF_MB))
    events = engine.feed(_finished(eid, "b", HALF_MB))  # committed: no event over the limit
    failed = [e for e in events if isinstance(e, c.ExecutionFailed)]
    assert len(failed) == 1 and failed[0].error.startswith(
        "outputs is 996.1 KiB, the limit is 984 KiB"
    )
    assert not [e for e in events if isinstance(e, c.ExecutionSucceeded)]


def test_a_step_input_too_large_for_one_event_fails_that_step() -> None:
    engine = _Engine()
    both = {"a": "${steps.a.output}", "b": "${steps.b.output}"}
    join = {"id": "join", "tool": "mock.agent", "input": both, "depends_on": ["a", "b"]}
    eid = _started(engine, {"steps": [*PAIR, join]})
    engine.feed(_finished(eid, "a", HALF_MB))
    events = engine.feed(_finished(eid, "b", HALF_MB))
    failed = [e for e in events if isinstance(e, c.StepFailed)]
    assert [(e.step_id, e.final) for e in failed] == [("join", True)]
    assert failed[0].error.startswith("input is 996.1 KiB, the limit is 984 KiB")
    assert any(isinstance(e, c.ExecutionFailed) for e in events)
