"""The divergence report of a re-run: a pure function of two histories."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from baton_common import contracts as c
from baton_common.divergence import describe, divergences


def _history(steps: dict[str, dict[str, Any]], unrecorded: dict[str, str], end: Any) -> list[Any]:
    eid = uuid4()
    plan = {"steps": [{"id": s, "tool": "mock.agent", "input": i} for s, i in steps.items()]}
    events: list[Any] = [c.ExecutionStarted(aggregate_id=eid, plan=plan)]
    for step_id, tool_input in steps.items():
        sim = (
            {"mode": "replay", "unrecorded": unrecorded[step_id]} if step_id in unrecorded else None
        )
        events.append(
            c.StepDispatched(aggregate_id=eid, step_id=step_id, attempt=1, tool="mock.agent",
                             input=tool_input, idempotency_key="k", timeout_s=5, simulated=sim)
        )  # fmt: skip
        events.append(c.StepSucceeded(aggregate_id=eid, step_id=step_id, attempt=1))
    return [*events, end(eid)]


def _ok(eid: Any) -> c.ExecutionSucceeded:
    return c.ExecutionSucceeded(aggregate_id=eid)


def test_an_unchanged_rerun_has_no_divergence() -> None:
    steps = {"a": {"task": "a"}, "b": {"task": "b"}}
    recorded = _history(steps, {}, _ok)
    assert divergences(recorded, _history(steps, {}, _ok)) == []


def test_changed_input_new_and_removed_steps_and_outcome() -> None:
    recorded = _history({"a": {"task": "a"}, "b": {"task": "b"}, "c": {"task": "c"}}, {},
                        _ok)  # fmt: skip
    rerun = _history(
        {"a": {"task": "a"}, "b": {"task": "B"}, "d": {"task": "d"}},
        {"b": "input differs from the recording", "d": "no recording of this step"},
        lambda eid: c.ExecutionFailed(aggregate_id=eid, error="boom"),
    )
    found = divergences(recorded, rerun)
    kinds = [(d["divergence"], d.get("step_id")) for d in found]
    assert kinds == [("input_differs", "b"), ("new_step", "d"), ("removed_step", "c"),
                     ("outcome", None)]  # fmt: skip
    assert found[0]["recorded"]["input"] == {"task": "b"} and found[0]["input"] == {"task": "B"}
    assert "succeeded in the recording, failed now" in describe(found[-1])
