"""Durable sleeps and parked executions: a long ``time.sleep`` is a timer row, not a worker's
task, and an execution that waits on a gate or a timer leaves the executor's memory."""

from __future__ import annotations

import gc

from baton_common import contracts as c
from baton_common.approvals import approval_id_for
from baton_executor.domain import Execution

from .test_execution import Harness

NAP = {"id": "nap", "tool": "time.sleep", "input": {"seconds": 3600}}
THEN = {"id": "then", "tool": "mock.agent", "input": {"task": "after"}, "depends_on": ["nap"]}


def test_a_long_sleep_is_a_timer_row_and_its_step_succeeds_when_it_fires() -> None:
    h = Harness()
    eid = h.start_steps(NAP, THEN)
    (nap,) = h.dispatched()
    assert nap.inline  # no worker takes it
    assert [t.payload["kind"] for t in h.timers.values()] == ["sleep"]
    assert eid not in h.app.cache  # parked: only the store holds it
    assert h.advance_time(3599) == []
    h.advance_time(1)
    then = h.dispatched()[-1]
    assert then.step_id == "then" and not then.inline  # the step after it: a worker's
    h.finish(then)
    assert h.types()[-1] == "succeeded"
    done = [e for e in h.events if isinstance(e, c.StepSucceeded) and e.step_id == "nap"]
    assert [(d.attempt, d.output) for d in done] == [(1, {"slept": 3600.0})]
    assert h.timers == {}  # the firing cleared its row


def test_a_timer_fired_twice_settles_the_sleep_once() -> None:
    h = Harness()
    h.start_steps(NAP, THEN)
    (row,) = h.timers.values()
    h.advance_time(3600)
    events = len(h.events)
    h._apply(h.app.fire([row], h.now))  # a replica read the row before it was cleared
    assert len(h.events) == events


def test_a_short_sleep_still_goes_to_a_worker() -> None:
    h = Harness()
    h.start_steps({"id": "blink", "tool": "time.sleep", "input": {"seconds": 0.5}})
    (blink,) = h.dispatched()
    assert not blink.inline and [t.payload["kind"] for t in h.timers.values()] == ["deadline"]


def test_cancel_clears_a_sleeps_timer() -> None:
    h = Harness()
    eid = h.start_steps(NAP, THEN)
    h.feed(c.ExecutionCancelRequested(aggregate_id=eid, reason="enough"))
    assert h.types()[-1] == "cancelled" and h.timers == {}


def test_an_execution_at_a_gate_leaves_memory_and_resumes_from_the_store() -> None:
    h = Harness()
    eid = h.start_steps({"id": "pay", "tool": "mock.critical", "input": {"action": "pay"}})
    assert h.types()[-1] == "approval_requested" and eid not in h.app.cache
    gate = approval_id_for(eid, "pay")
    asked = {"action": "pay"}
    h.feed(c.ApprovalGranted(aggregate_id=gate, aggregate_version=2, execution_id=eid,
                             step_id="pay", input=asked, original_input=asked))  # fmt: skip
    (pay,) = h.dispatched()
    assert eid in h.app.cache  # its step is at a worker now: kept while it runs
    h.finish(pay, output={"done": "pay"})
    assert h.types()[-1] == "succeeded" and eid not in h.app.cache


def test_a_parked_execution_is_not_kept_alive_by_the_batch_that_parked_it() -> None:
    # The application kept the last batch's executions in a dict until the next batch: up to
    # 500 parked executions (plans, step states, ~7 kB each) held by an idle executor.
    h = Harness()
    gated = h.start_steps({"id": "pay", "tool": "mock.critical", "input": {"action": "pay"}})
    asleep = h.start_steps(NAP, THEN)
    gc.collect()
    alive = {o.id for o in gc.get_objects() if isinstance(o, Execution)}
    assert not alive & {gated, asleep}
