"""Pure tools run inside the executor, each recorded by one event that carries its call, and each
step's outcome committed before a step that depends on it starts; everything that could wait or
has side effects still goes to a worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from baton_common import contracts as c
from baton_common import perf
from baton_executor.application import ExecutorApp
from baton_executor.inline import Inline, InlineCall

from .test_execution import Harness


def inline_harness() -> Harness:
    h = Harness()
    h.app = ExecutorApp(h.store, inline=Inline())
    return h


CHAIN = {
    "steps": [
        {"id": "a", "tool": "mock.agent", "input": {"task": "collect"}},
        {
            "id": "b",
            "tool": "text.template",
            "input": {"template": "got {r}", "values": {"r": "${steps.a.output.result}"}},
        },
        {
            "id": "c",
            "tool": "json.query",
            "input": {"data": {"t": "${steps.b.output.text}"}, "path": "t"},
        },
    ]
}


def calls(h: Harness) -> list[c.StepDispatched]:
    """Every attempt's dispatch: a worker's task, or what a pure step's one event stands for."""
    return [e for e in c.unfolded(h.events) if isinstance(e, c.StepDispatched)]


def test_a_chain_of_pure_steps_runs_to_its_end_without_a_worker() -> None:
    h = inline_harness()
    h.start(CHAIN)
    assert h.types() == ["started", *["step_succeeded"] * 3, "succeeded"]  # one event a step
    ran = [e for e in h.events if isinstance(e, c.StepSucceeded)]
    assert [(e.step_id, e.call and e.call.tool) for e in ran] == [
        ("a", "mock.agent"),
        ("b", "text.template"),
        ("c", "json.query"),
    ]
    assert ran[1].call is not None and ran[1].call.input["values"] == {"r": "done: collect"}
    assert [(d.step_id, d.attempt, d.inline) for d in calls(h)] == [
        ("a", 1, True),
        ("b", 1, True),
        ("c", 1, True),
    ]
    assert h.events[-1].outputs["c"] == {"result": "got done: collect", "found": True}
    assert h.timers == {}  # the resume timer was cleared with the last step


def commit_of(h: Harness, step_id: str, event_type: type) -> int:
    return next(
        i
        for i, events in enumerate(h.commits)
        if any(isinstance(e, event_type) and e.step_id == step_id for e in events)
    )


def test_each_outcome_is_committed_before_the_step_that_reads_it_starts() -> None:
    h = inline_harness()
    h.start(CHAIN)
    done = [commit_of(h, s, c.StepSucceeded) for s in "abc"]
    assert done == [0, 1, 2]  # one commit per step of the chain: b runs once a's is made
    assert not h.dispatched()  # nothing was handed out, and no step was recorded twice


def test_a_chain_writes_its_resume_timer_once_and_clears_it_at_the_end() -> None:
    h = inline_harness()
    eid = h.start_steps(
        *CHAIN["steps"],
        {"id": "d", "tool": "mock.agent", "depends_on": ["c"], "input": {}},
    )
    resume = f"resume:{eid}"
    # Written by the first commit, kept (not rewritten) while the chain runs, cleared by the
    # last: the commits in between write no timer row at all (no admission wake-up to clear
    # either, since no step waited for a place).
    assert h.timer_rows == [([resume], []), ([], []), ([], []), ([], [resume])]
    assert h.types()[-1] == "succeeded" and h.timers == {}


def test_a_resume_timer_close_to_due_is_moved_on_by_the_next_step() -> None:
    h = inline_harness()
    h.follow_ups = False
    eid = h.start(CHAIN)
    first = h.timers[f"resume:{eid}"].due_at
    h.now += timedelta(seconds=2.5)  # the next step runs late (a slow machine)
    h.follow_ups = True
    h._apply(h.app.follow_up(h.now))
    assert h.timer_rows[1] == ([f"resume:{eid}"], [])  # within a second of due: written again
    assert h.timer_rows[-1] == ([], [f"resume:{eid}"]) and first < h.now + timedelta(seconds=1)
    assert h.types()[-1] == "succeeded"


def test_independent_pure_steps_share_a_commit_and_their_join_follows_it() -> None:
    h = inline_harness()
    h.start_steps(
        *({"id": f"f{i}", "tool": "mock.agent", "input": {"task": str(i)}} for i in range(4)),
        {
            "id": "join",
            "tool": "mock.agent",
            "depends_on": [f"f{i}" for i in range(4)],
            "input": {"task": "join"},
        },
    )
    assert [commit_of(h, f"f{i}", c.StepSucceeded) for i in range(4)] == [0, 0, 0, 0]
    assert commit_of(h, "join", c.StepSucceeded) == 1 and len(h.commits) == 2
    assert h.types()[-1] == "succeeded"


def test_a_restart_between_two_commits_runs_the_waiting_step_from_its_timer() -> None:
    h = inline_harness()
    h.follow_ups = False  # the executor dies right after a's commit
    eid = h.start(CHAIN)
    assert h.types() == ["started", "step_succeeded"]  # a's outcome; b waits for that commit
    assert list(h.timers) == [f"resume:{eid}"]
    h.app = ExecutorApp(h.store, inline=Inline())  # a new process, state from the store
    h.follow_ups = True
    assert h.advance_time(1) == []  # the resume timer is not due yet
    h.advance_time(3)
    assert h.types()[-1] == "succeeded"
    assert [(d.step_id, d.attempt) for d in calls(h)] == [("a", 1), ("b", 1), ("c", 1)]
    assert not any(isinstance(e, c.StepFailed) for e in h.events)  # run once, never failed
    assert h.app.load(eid) is not None and h.timers == {}


def test_a_state_rebuilt_from_the_store_equals_the_one_decided_inline() -> None:
    h = inline_harness()
    eid = h.start(CHAIN)
    decided = h.app.load(eid)
    h.app.invalidate()
    rebuilt = h.app.load(eid)
    assert decided is not None and rebuilt is not None and rebuilt is not decided
    assert rebuilt.status == decided.status == "succeeded"
    assert {s: r.output for s, r in rebuilt.steps.items()} == {
        s: r.output for s, r in decided.steps.items()
    }


def test_an_inline_failure_retries_on_a_durable_timer_with_the_same_key() -> None:
    h = inline_harness()
    h.start_steps(
        {
            "id": "s",
            "tool": "mock.agent",
            "input": {"task": "flaky", "fail_times": 1},
            "retry": {"max_attempts": 2, "backoff_s": 1, "jitter": 0},
        }
    )
    failed = [e for e in h.events if isinstance(e, c.StepFailed)]
    assert len(failed) == 1 and "scripted failure 1 of 1" in (failed[0].error or "")
    assert h.types()[-1] == "step_failed"  # waits for its retry timer, like any step
    h.app.invalidate()
    h.advance_time(1.5)
    assert h.types()[-1] == "succeeded"
    first, second = calls(h)  # the failed attempt's dispatch, then the second's one event
    assert first.inline and isinstance(h.events[h.events.index(first) + 1], c.StepFailed)
    assert (second.attempt, second.idempotency_key) == (2, first.idempotency_key)


def test_what_could_wait_or_touch_the_world_goes_to_a_worker() -> None:
    h = inline_harness()
    h.start_steps(
        {"id": "slow", "tool": "mock.agent", "input": {"task": "x", "latency_ms": 5}},
        {"id": "io", "tool": "files.write", "input": {"path": "a.txt", "content": "x"}},
    )
    assert [(d.step_id, d.inline) for d in h.dispatched()] == [("slow", False), ("io", False)]
    assert any(k.startswith("deadline:") for k in h.timers)  # a worker's lease backstop


def test_bad_input_fails_the_step_for_good_without_a_worker() -> None:
    h = inline_harness()
    h.start({"steps": [{"id": "t", "tool": "text.template", "input": {"template": "{missing}"}}]})
    failed = [e for e in h.events if isinstance(e, c.StepFailed)]
    assert failed and failed[0].final and "no value for placeholder {missing}" in failed[0].error
    assert h.types()[-1] == "failed"


def test_with_inline_off_every_step_goes_to_a_worker() -> None:
    h = Harness()  # the application's default: never inline
    h.start(CHAIN)
    assert [(d.step_id, d.inline) for d in h.dispatched()] == [("a", False)]


def test_the_runner_uses_the_worker_code_and_refuses_a_tool_that_suspends() -> None:
    class Suspends:
        spec = Inline().tools["mock.agent"].spec

        async def run(self, input: dict[str, Any], ctx: Any) -> dict[str, Any]:
            import asyncio

            await asyncio.sleep(0)
            return {"result": "never here"}

    call = InlineCall("mock.agent", {"task": "t"}, "e", "s", 1, "e:s", "default")
    assert Inline({"mock.agent": Suspends()})(call) is None  # type: ignore[dict-item]
    ran = Inline()(call)
    assert (
        ran is not None
        and ran.ok
        and ran.output
        == {
            "result": "done: t",
            "task": "t",
            "attempt": 1,
        }
    )


def test_an_ended_execution_leaves_the_cache_and_a_late_message_reloads_it() -> None:
    h = inline_harness()
    eid = h.start(CHAIN)
    assert h.types()[-1] == "succeeded" and eid not in h.app.cache  # memory stays flat
    first = calls(h)[0]
    h.finish(first, output={"result": "late"})  # a late duplicate result: loaded, ignored
    assert h.types()[-1] == "succeeded" and h.app.load(eid) is not None


def test_a_step_run_inline_is_in_the_step_latency_histogram() -> None:
    def count(tool: str, outcome: str) -> float:
        value = perf.REGISTRY.get_sample_value(
            "baton_step_duration_seconds_count", {"tool": tool, "outcome": outcome}
        )
        return value or 0.0

    ok_before, bad_before = count("json.query", "succeeded"), count("json.query", "failed")
    runner = Inline()
    good = InlineCall("json.query", {"data": {"a": 1}, "path": "a"}, "e", "q", 1, "e:q", "default")
    bad = InlineCall("json.query", {"data": {}}, "e", "q", 2, "e:q", "default")  # no path
    assert runner(good) is not None and runner(bad) is not None
    assert count("json.query", "succeeded") == ok_before + 1
    assert count("json.query", "failed") == bad_before + 1
