"""The Execution aggregate and the executor application on the in-memory store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.store import MemoryEventStore
from baton_executor.application import ExecutorApp
from baton_executor.domain import Execution

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Harness:
    """Drives an ExecutorApp the way the bus would, with a scripted tool world."""

    def __init__(self) -> None:
        self.store = MemoryEventStore("executor")
        self.app = ExecutorApp(self.store)
        self.now = T0
        self.events: list[Any] = []
        self.timers: dict[str, Any] = {}
        self.commits: list[list[Any]] = []  # the events of each commit, in order
        self.timer_rows: list[tuple[list[str], list[str]]] = []  # each commit's (set, cleared)
        self.follow_ups = True  # False: the process "dies" right after a commit

    def feed(self, event: Any) -> list[Any]:
        commit = self.app.handle([Delivery(event)], self.now)
        return self._apply(commit)

    def _apply(self, commit: Any) -> list[Any]:
        """Commit, then make the commits that wait for it (as the consumer does)."""
        made: list[Any] = []
        while commit is not None:
            self.store.commit(commit)
            for t in commit.timers_clear:
                self.timers.pop(t, None)
            self.timers.update({t.timer_id: t for t in commit.timers_set})
            self.events += commit.events
            self.commits.append(list(commit.events))
            self.timer_rows.append(([t.timer_id for t in commit.timers_set], commit.timers_clear))
            made += commit.events
            commit = self.app.follow_up(self.now) if self.follow_ups else None
        return made

    def start(
        self, plan: dict[str, Any], inputs: dict[str, Any] | None = None, **proposed: Any
    ) -> Any:
        """Propose ``plan`` (``proposed``: more fields of the PlanProposed) to a new execution."""
        eid = uuid4()
        self.feed(
            c.PlanProposed(
                aggregate_id=eid,
                aggregate_version=1,
                execution_id=eid,
                plan=plan,
                planner="direct",
                inputs=inputs or {},
                **proposed,
            )
        )
        return eid

    def start_steps(self, *steps: dict[str, Any]) -> Any:
        """Propose a plan of ``steps`` to a new execution."""
        return self.start({"steps": list(steps)})

    def dispatched(self) -> list[c.StepDispatched]:
        return [e for e in self.events if isinstance(e, c.StepDispatched)]

    def finish(
        self, d: c.StepDispatched, ok: bool = True, output: Any = None, retryable: bool = True
    ) -> list[Any]:
        return self.feed(
            c.TaskFinished(
                **d.attempt_of(),
                ok=ok,
                output=output,
                error=None if ok else "boom",
                retryable=retryable,
            )
        )

    def advance_time(self, seconds: float) -> list[Any]:
        self.now += timedelta(seconds=seconds)
        due = [t for t in self.timers.values() if t.due_at <= self.now]
        return self._apply(self.app.fire(due, self.now)) if due else []

    def types(self) -> list[str]:
        return [e.type.split(".", 1)[1] for e in self.events]


FAN = {
    "steps": [
        {"id": "a", "tool": "mock.agent", "input": {"task": "a"}},
        {"id": "b", "tool": "mock.agent", "input": {"task": "b"}},
        {
            "id": "join",
            "tool": "text.template",
            "input": {
                "template": "{x} {y}",
                "values": {"x": "${steps.a.output.result}", "y": "${steps.b.output.result}"},
            },
        },
    ]
}


def test_fan_out_runs_in_parallel_and_join_gets_outputs_by_reference() -> None:
    h = Harness()
    h.start(FAN)
    first = h.dispatched()
    assert [d.step_id for d in first] == ["a", "b"]  # both at once; join waits
    h.finish(first[0], output={"result": "A"})
    assert len(h.dispatched()) == 2
    h.finish(first[1], output={"result": "B"})
    join = h.dispatched()[-1]
    assert join.step_id == "join" and join.input["values"] == {"x": "A", "y": "B"}
    assert join.idempotency_key == f"{join.aggregate_id}:join"
    h.finish(join, output={"text": "A B"})
    assert h.types()[-1] == "succeeded"
    assert h.events[-1].outputs == {"join": {"text": "A B"}}


def test_retry_waits_on_a_durable_timer_then_uses_the_same_idempotency_key() -> None:
    h = Harness()
    h.start_steps(
        {
            "id": "s",
            "tool": "mock.agent",
            "retry": {"max_attempts": 3, "backoff_s": 2, "jitter": 0},
        }
    )
    d1 = h.dispatched()[-1]
    failed = h.finish(d1, ok=False)[0]
    assert isinstance(failed, c.StepFailed) and failed.retry_at == T0 + timedelta(seconds=2)
    assert any(k.startswith("retry:") for k in h.store.recorder.timers)  # stored with the commit
    assert h.advance_time(1) == []
    h.app.invalidate()  # a restart: state comes back from the store
    h.advance_time(1.5)
    d2 = h.dispatched()[-1]
    assert (d2.attempt, d2.idempotency_key) == (2, d1.idempotency_key)
    h.finish(d2)
    assert h.types()[-1] == "succeeded"


def test_a_retry_set_by_another_replica_fires_on_this_one_from_the_stored_state() -> None:
    h = Harness()
    h.start_steps({"id": "s", "tool": "mock.agent", "retry": {"max_attempts": 3, "backoff_s": 2}})
    first, d1 = h.app, h.dispatched()[-1]  # this replica has the execution cached, step running
    h.app = ExecutorApp(h.store)  # the other replica takes the failure and sets the retry timer
    assert isinstance(h.finish(d1, ok=False)[0], c.StepFailed)
    h.app = first  # the timer falls due here: the cached state never saw the failure
    h.advance_time(5)
    d2 = h.dispatched()[-1]
    assert (d2.step_id, d2.attempt, d2.idempotency_key) == ("s", 2, d1.idempotency_key)


def test_a_result_of_an_attempt_another_replica_dispatched_is_taken_here() -> None:
    h = Harness()
    h.start_steps({"id": "s", "tool": "mock.agent", "retry": {"max_attempts": 3, "backoff_s": 2}})
    first, d1 = h.app, h.dispatched()[-1]  # cached here with attempt 1 running
    h.app = ExecutorApp(h.store)  # the other replica fails attempt 1 and dispatches attempt 2
    h.finish(d1, ok=False)
    h.advance_time(5)
    d2 = h.dispatched()[-1]
    assert d2.attempt == 2
    h.app = first  # attempt 2's result arrives here
    h.finish(d2)
    assert h.types()[-1] == "succeeded"


def test_exhausted_retries_try_alternatives_then_compensate_in_reverse_order() -> None:
    h = Harness()
    h.start_steps(
        {
            "id": "one",
            "tool": "files.write",
            "input": {"path": "1", "content": "x"},
            "compensate": {"tool": "files.delete", "input": {"path": "1"}},
        },
        {
            "id": "two",
            "tool": "files.write",
            "input": {"path": "2", "content": "x"},
            "depends_on": ["one"],
            "compensate": {"tool": "files.delete", "input": {"path": "2"}},
        },
        {
            "id": "three",
            "tool": "mock.agent",
            "depends_on": ["two"],
            "retry": {"max_attempts": 1},
            "alternatives": [{"tool": "llm.generate", "input": {"prompt": "fallback"}}],
        },
        {"id": "four", "tool": "mock.agent", "depends_on": ["three"]},
    )
    h.finish(h.dispatched()[-1])
    h.finish(h.dispatched()[-1])
    h.finish(h.dispatched()[-1], ok=False)
    alt = h.dispatched()[-1]
    assert (alt.step_id, alt.tool, alt.variant) == ("three", "llm.generate", 1)
    h.finish(alt, ok=False)
    comp = h.dispatched()[-1]
    assert (comp.step_id, comp.kind, comp.tool) == ("two", "compensate", "files.delete")
    h.finish(comp)
    comp = h.dispatched()[-1]
    assert (comp.step_id, comp.kind) == ("one", "compensate")
    h.finish(comp)
    assert h.types()[-1] == "failed"
    assert "three" in h.events[-1].error
    assert [e.step_id for e in h.events if isinstance(e, c.StepSkipped)] == ["four"]


def test_non_retryable_failure_skips_remaining_attempts() -> None:
    h = Harness()
    h.start({"steps": [{"id": "s", "tool": "mock.agent", "retry": {"max_attempts": 5}}]})
    h.finish(h.dispatched()[-1], ok=False, retryable=False)
    assert h.types()[-1] == "failed" and len(h.dispatched()) == 1


def test_pause_holds_new_steps_and_resume_releases_them() -> None:
    h = Harness()
    eid = h.start_steps(
        {"id": "a", "tool": "mock.agent"},
        {"id": "b", "tool": "mock.agent", "depends_on": ["a"]},
    )
    h.feed(c.ExecutionPauseRequested(aggregate_id=eid))
    h.finish(h.dispatched()[-1])
    assert len(h.dispatched()) == 1 and h.types()[-1] == "step_succeeded"
    h.feed(c.ExecutionResumeRequested(aggregate_id=eid))
    assert h.dispatched()[-1].step_id == "b"


def test_pause_holds_a_retry_and_an_alternative_until_resume() -> None:
    """A step that fails while paused starts nothing: its retry waits past its time, and its
    alternative waits ready; resume starts both (each once)."""
    h = Harness()
    eid = h.start_steps(
        {"id": "r", "tool": "mock.agent", "retry": {"max_attempts": 2, "backoff_s": 1}},
        {"id": "alt", "tool": "mock.agent", "retry": {"max_attempts": 1},
         "alternatives": [{"tool": "mock.agent", "input": {"task": "plan b"}}]},
    )  # fmt: skip
    h.feed(c.ExecutionPauseRequested(aggregate_id=eid))
    for first in h.dispatched():
        h.finish(first, ok=False)
    h.advance_time(30)  # the retry's timer fires during the pause
    assert len(h.dispatched()) == 2
    h.app.cache.clear()  # and a rebuild from the history agrees
    h.feed(c.ExecutionResumeRequested(aggregate_id=eid))
    again = {(d.step_id, d.attempt, d.variant) for d in h.dispatched()[2:]}
    assert again == {("r", 2, 0), ("alt", 2, 1)}
    h.advance_time(30)
    assert len(h.dispatched()) == 4  # the fired timer did not start the retry a second time


def test_cancel_cancels_running_steps_compensates_and_ignores_late_results() -> None:
    h = Harness()
    eid = h.start_steps(
        {
            "id": "a",
            "tool": "mock.agent",
            "compensate": {"tool": "mock.agent", "input": {"task": "undo a"}},
        },
        {"id": "b", "tool": "time.sleep", "input": {"seconds": 60}, "depends_on": ["a"]},
    )
    h.finish(h.dispatched()[-1])
    running_b = h.dispatched()[-1]
    h.feed(c.ExecutionCancelRequested(aggregate_id=eid, reason="user"))
    undo = h.dispatched()[-1]
    assert (undo.step_id, undo.kind) == ("a", "compensate")
    assert h.finish(running_b) == []  # late result of a cancelled step: nothing happens
    h.finish(undo)
    assert h.types()[-1] == "cancelled"


def test_condition_false_skips_the_step() -> None:
    h = Harness()
    h.start_steps(
        {"id": "a", "tool": "mock.agent"},
        {"id": "b", "tool": "mock.agent", "when": '${steps.a.output.result} == "go"'},
    )
    h.finish(h.dispatched()[-1], output={"result": "stop"})
    assert [t for t in h.types() if t.startswith("step_skipped")] == ["step_skipped"]
    assert h.types()[-1] == "succeeded"


def test_deadline_timer_fails_a_lost_attempt_and_retries() -> None:
    h = Harness()
    h.start_steps(
        {
            "id": "s",
            "tool": "mock.agent",
            "timeout": 10,
            "retry": {"max_attempts": 2, "backoff_s": 0},
        }
    )
    h.advance_time(10 + 61)
    h.advance_time(0.01)
    assert [d.attempt for d in h.dispatched()] == [1, 2]
    assert "no result within" in next(e for e in h.events if isinstance(e, c.StepFailed)).error


def test_max_parallel_bounds_running_steps() -> None:
    h = Harness()
    h.start({"max_parallel": 2, "steps": [{"id": f"s{i}", "tool": "mock.agent"} for i in range(5)]})
    assert len(h.dispatched()) == 2
    h.finish(h.dispatched()[0])
    assert len(h.dispatched()) == 3


def test_rebuilding_from_history_gives_the_same_state() -> None:
    h = Harness()
    eid = h.start(FAN)
    for d in h.dispatched()[:2]:
        h.finish(d, output={"result": d.step_id})
    live = h.app.load(eid)
    rebuilt = Execution.rebuild(eid, h.store.load(eid))
    assert rebuilt is not None and live is not None
    assert (
        rebuilt.steps == live.steps
        and rebuilt.version == live.version
        and rebuilt.status == live.status
    )


def test_duplicate_plan_and_cancel_before_plan_are_handled_once() -> None:
    h = Harness()
    eid = uuid4()
    h.feed(c.ExecutionCancelRequested(aggregate_id=eid))
    assert h.types() == ["cancelled"]
    h.feed(
        c.PlanProposed(
            aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=FAN, planner="direct"
        )
    )
    assert h.types() == ["cancelled"]


def test_a_plan_given_directly_starts_without_the_planner_and_a_bad_one_fails_clearly() -> None:
    h = Harness()
    eid = uuid4()
    h.feed(c.ExecutionRequested(aggregate_id=eid, aggregate_version=1, plan=FAN, inputs={}))
    assert h.types()[:3] == ["started", "step_dispatched", "step_dispatched"]
    assert (
        h.feed(
            c.ExecutionRequested(aggregate_id=uuid4(), aggregate_version=1, request="words only")
        )
        == []
    )
    bad = uuid4()
    failed = h.feed(
        c.ExecutionRequested(
            aggregate_id=bad,
            aggregate_version=1,
            plan={"steps": [{"id": "x", "tool": "gone.tool"}]},
        )
    )
    assert [e.type for e in failed] == ["execution.failed"]
    assert "unknown tool 'gone.tool'" in failed[0].error
