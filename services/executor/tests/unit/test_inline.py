"""Pure tools run inside the executor: a chain of them is decided in one commit, with the events
a worker-run step has; everything that could wait or has side effects still goes to a worker."""

from __future__ import annotations

from typing import Any

from baton_common import contracts as c
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


def test_a_chain_of_pure_steps_ends_in_the_commit_that_started_it() -> None:
    h = inline_harness()
    h.start(CHAIN)
    assert h.types() == [
        "started",
        *["step_dispatched", "step_succeeded"] * 3,
        "succeeded",
    ]
    dispatched = h.dispatched()
    assert all(d.inline for d in dispatched)  # workers ack and leave these alone
    assert h.events[-1].outputs["c"] == {"result": "got done: collect", "found": True}
    assert h.timers == {}  # no step deadline was set, and none is left behind


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
    h.start(
        {
            "steps": [
                {
                    "id": "s",
                    "tool": "mock.agent",
                    "input": {"task": "flaky", "fail_times": 1},
                    "retry": {"max_attempts": 2, "backoff_s": 1, "jitter": 0},
                }
            ]
        }
    )
    failed = [e for e in h.events if isinstance(e, c.StepFailed)]
    assert len(failed) == 1 and "scripted failure 1 of 1" in (failed[0].error or "")
    assert h.types()[-1] == "step_failed"  # waits for its retry timer, like any step
    h.app.invalidate()
    h.advance_time(1.5)
    assert h.types()[-1] == "succeeded"
    first, second = h.dispatched()
    assert (second.attempt, second.idempotency_key) == (2, first.idempotency_key)


def test_what_could_wait_or_touch_the_world_goes_to_a_worker() -> None:
    h = inline_harness()
    h.start(
        {
            "steps": [
                {"id": "slow", "tool": "mock.agent", "input": {"task": "x", "latency_ms": 5}},
                {"id": "io", "tool": "files.write", "input": {"path": "a.txt", "content": "x"}},
            ]
        }
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
    first = h.dispatched()[0]
    h.finish(first, output={"result": "late"})  # a late duplicate result: loaded, ignored
    assert h.types()[-1] == "succeeded" and h.app.load(eid) is not None
