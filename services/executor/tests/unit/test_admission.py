"""Admission on the in-memory store: locks (FIFO, shared/exclusive, policies, timeouts), a
workspace's steps in flight, rates, and an upstream's Retry-After."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.store import Commit, ConcurrencyConflict, MemoryEventStore
from baton_common.views import fold
from baton_common.workspaces import WorkspacePolicy
from baton_executor import admission
from baton_executor.admission import CROWDED_S, NO_QUEUE_FRESH_S, StoreAdmission
from baton_executor.application import ExecutorApp
from baton_executor.inline import Inline


class World:
    """An ExecutorApp on the in-memory store, its timers fired from the store itself (so the
    store's wake-ups count), on a clock that starts now and only moves forward."""

    def __init__(self, steps_in_flight: int = 100, policy: WorkspacePolicy | None = None) -> None:
        self.store = MemoryEventStore("executor")
        self.policy = policy or WorkspacePolicy()
        admission = StoreAdmission(
            self.store, lambda _ws: self.policy, steps_in_flight=steps_in_flight
        )
        self.app = ExecutorApp(self.store, admission=admission)
        self.now = datetime.now(UTC)
        self.events: list[Any] = []

    def commit(self, commit: Commit) -> list[Any]:
        self.store.commit(commit)
        self.events += commit.events
        return list(commit.events)

    def start(self, plan: dict[str, Any], workspace: str = "default", **inputs: Any) -> UUID:
        eid = uuid4()
        event = c.PlanProposed(aggregate_id=eid, aggregate_version=1, execution_id=eid,
                               plan=plan, planner="direct", inputs=inputs, workspace_id=workspace)  # fmt: skip
        self.commit(self.app.handle([Delivery(event)], self.now))
        return eid

    def running(self) -> dict[tuple[UUID, str], c.StepDispatched]:
        """Dispatched steps without a result yet."""
        out: dict[tuple[UUID, str], c.StepDispatched] = {}
        for e in self.events:
            if isinstance(e, c.StepDispatched):
                out[(e.aggregate_id, e.step_id)] = e
            elif isinstance(e, c.StepSucceeded | c.StepFailed | c.StepCancelled):
                out.pop((e.aggregate_id, e.step_id), None)
        return out

    def finish(self, eid: UUID, step: str, ok: bool = True, **extra: Any) -> list[Any]:
        d = self.running()[(eid, step)]
        result = c.TaskFinished(aggregate_id=eid, step_id=step, attempt=d.attempt, ok=ok,
                                error=None if ok else "boom", **extra)  # fmt: skip
        return self.commit(self.app.handle([Delivery(result)], self.now))

    def tick(self, seconds: float = 1.0) -> list[Any]:
        self.now += timedelta(seconds=seconds)
        due = self.store.due_timers(self.now, 1000)
        return self.commit(self.app.fire(due, self.now)) if due else []

    def of(self, eid: UUID, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind) and e.aggregate_id == eid]


def locked(name: str = "repo:baton", mode: str = "exclusive", **extra: Any) -> dict[str, Any]:
    lock = {"name": name, "mode": mode, **extra}
    return {"steps": [{"id": "s", "tool": "mock.agent", "locks": [lock]}]}


def test_an_exclusive_lock_runs_contenders_one_after_the_other_and_a_release_wakes_the_next() -> (
    None
):
    w = World()
    a, b = w.start(locked()), w.start(locked())
    assert set(w.running()) == {(a, "s")}
    waiting = w.of(b, c.StepWaiting)
    assert [(x.waiting_for, x.locks, x.holders) for x in waiting] == [
        ("locks", ["repo:baton"], [f"{a}:s"])
    ]
    w.tick()  # nothing was released: b asks again and keeps waiting, without a new event
    assert set(w.running()) == {(a, "s")} and len(w.of(b, c.StepWaiting)) == 1
    w.finish(a, "s")
    assert w.store.due_timers(w.now + timedelta(seconds=0.5), 10)  # woken at once, not polled
    w.tick(0.5)
    assert set(w.running()) == {(b, "s")}
    view = fold(w.of(b, c.ExecutionStarted) + w.of(b, c.StepWaiting))
    assert view is not None and view["steps"]["s"]["status"] == "waiting"
    assert view["steps"]["s"]["waiting"]["holders"] == [f"{a}:s"]


def test_shared_holders_run_together_and_an_exclusive_waits_for_all_of_them() -> None:
    w = World()
    r1, r2 = w.start(locked(mode="shared")), w.start(locked(mode="shared"))
    x = w.start(locked())
    r3 = w.start(locked(mode="shared"))  # FIFO: behind the exclusive waiter, not beside r1, r2
    assert set(w.running()) == {(r1, "s"), (r2, "s")}
    w.finish(r1, "s")
    w.tick()
    assert (x, "s") not in w.running()
    w.finish(r2, "s")
    w.tick()
    assert set(w.running()) == {(x, "s")}
    w.finish(x, "s")
    w.tick()
    assert set(w.running()) == {(r3, "s")}


def test_lock_names_take_inputs_and_different_names_do_not_contend() -> None:
    w = World()
    plan = locked("repo:${input.repo}")
    a, b, a2 = w.start(plan, repo="x"), w.start(plan, repo="y"), w.start(plan, repo="x")
    assert set(w.running()) == {(a, "s"), (b, "s")}
    assert w.of(a2, c.StepWaiting)[0].locks == ["repo:x"]


def test_policy_fail_fails_the_step_at_once_with_the_holder_named() -> None:
    w = World()
    a = w.start(locked())
    b = w.start(locked(policy="fail"))
    failed = w.of(b, c.StepFailed)
    assert failed and failed[0].final and f"{a}:s" in failed[0].error
    assert w.of(b, c.ExecutionFailed)


def test_a_wait_longer_than_its_timeout_fails_the_step() -> None:
    w = World()
    w.start(locked())
    b = w.start(locked(wait_timeout_s=3))
    for _ in range(4):
        w.tick()
    assert "waited 3s" in w.of(b, c.ExecutionFailed)[0].error


def test_cancelling_a_waiting_step_gives_up_its_place_in_the_queue() -> None:
    w = World()
    a, b, third = w.start(locked()), w.start(locked()), w.start(locked())
    cancel = c.ExecutionCancelRequested(aggregate_id=b, reason="no longer needed")
    w.commit(w.app.handle([Delivery(cancel)], w.now))
    assert w.of(b, c.StepCancelled) and w.of(b, c.ExecutionCancelled)
    w.finish(a, "s")
    w.tick()
    assert set(w.running()) == {(third, "s")}


def test_twenty_contenders_with_random_lock_sets_all_finish() -> None:
    import random

    rng = random.Random(7)
    w = World()
    ids = []
    for _ in range(20):
        names = rng.sample(["a", "b", "c", "d"], rng.randint(1, 3))
        locks = [{"name": n, "mode": rng.choice(["exclusive", "shared"])} for n in names]
        ids.append(w.start({"steps": [{"id": "s", "tool": "mock.agent", "locks": locks}]}))
    for _ in range(200):
        for eid, step in list(w.running()):
            w.finish(eid, step)
        w.tick()
        if all(w.of(i, c.ExecutionSucceeded) for i in ids):
            break
    assert all(w.of(i, c.ExecutionSucceeded) for i in ids)


def test_a_workspaces_steps_in_flight_are_bounded_and_another_workspace_is_not_held_up() -> None:
    w = World(steps_in_flight=2)
    fan = {"steps": [{"id": f"s{i}", "tool": "mock.agent"} for i in range(4)]}
    big = w.start(fan, workspace="big")
    assert len(w.running()) == 2
    assert [x.waiting_for for x in w.of(big, c.StepWaiting)] == ["quota", "quota"]
    small = w.start({"steps": [{"id": "s", "tool": "mock.agent"}]}, workspace="small")
    assert (small, "s") in w.running()
    w.finish(big, "s0")
    w.tick(0.1)
    assert sorted(s for e, s in w.running() if e == big) == ["s1", "s2"]


def test_pure_steps_run_by_the_executor_take_no_place_in_flight_but_keep_rates_and_locks() -> None:
    w = World(steps_in_flight=1, policy=WorkspacePolicy(tool_rates={"json.query": "1/s"}))
    w.app.inline = Inline()
    fan = {"steps": [{"id": f"s{i}", "tool": "mock.agent"} for i in range(3)]}
    eid = w.start(fan)  # never queued behind the one place: they never enter the work queue
    assert len(w.of(eid, c.StepSucceeded)) == 3 and w.of(eid, c.ExecutionSucceeded)
    assert not w.of(eid, c.StepWaiting) and not w.store.lock_rows(["slot:steps:default"])
    query = {"tool": "json.query", "input": {"data": {"a": 1}, "path": "a"}}
    rated = w.start({"steps": [{"id": f"q{i}", **query} for i in range(2)]})
    assert [x.waiting_for for x in w.of(rated, c.StepWaiting)] == ["rate"]
    w.tick(1.0)
    assert w.of(rated, c.ExecutionSucceeded)
    locked_plan = locked()
    locked_plan["steps"][0]["input"] = {"task": "t"}
    a, b = w.start(locked_plan), w.start(locked_plan)  # each held and gave back its lock
    assert w.of(a, c.ExecutionSucceeded) and w.of(b, c.ExecutionSucceeded)
    assert not w.store.lock_rows(["lock:default:repo:baton"])


def test_a_rate_spaces_calls_and_the_wait_shows_as_rate() -> None:
    w = World(policy=WorkspacePolicy(tool_rates={"mock.agent": "2/s"}))
    fan = {"steps": [{"id": f"s{i}", "tool": "mock.agent"} for i in range(4)]}
    eid = w.start(fan)
    assert len(w.running()) == 1  # one place per 0.5 s: the first now, the rest reserved
    waits = w.of(eid, c.StepWaiting)
    assert [x.waiting_for for x in waits] == ["rate"] * 3
    assert [(x.until - w.now).total_seconds() for x in waits] == [0.5, 1.0, 1.5]
    started = []
    for _ in range(8):
        w.tick(0.25)
        started.append(len(w.running()))
    assert started == [1, 2, 2, 3, 3, 4, 4, 4]


def test_llm_generate_declares_60_per_minute() -> None:
    w = World()
    plan = {"steps": [{"id": f"s{i}", "tool": "llm.generate", "input": {"prompt": "hi"}}
                      for i in range(2)]}  # fmt: skip
    eid = w.start(plan)
    assert len(w.running()) == 1
    assert (w.of(eid, c.StepWaiting)[0].until - w.now).total_seconds() == pytest.approx(1.0)


def test_retry_after_from_upstream_delays_the_retry_at_least_that_long() -> None:
    w = World()
    eid = w.start({"steps": [{"id": "s", "tool": "mock.agent", "retry": {"backoff_s": 0.1}}]})
    w.finish(eid, "s", ok=False, retry_after_s=30)
    failed = w.of(eid, c.StepFailed)[0]
    assert failed.retry_at is not None and (failed.retry_at - w.now).total_seconds() >= 30


def test_a_tool_the_workspace_denies_fails_the_execution_at_start() -> None:
    w = World(policy=WorkspacePolicy(tools_deny=["mock.agent"]))
    eid = w.start({"steps": [{"id": "s", "tool": "mock.agent"}]})
    assert "denied" in w.of(eid, c.ExecutionFailed)[0].error
    assert not w.running()


def test_the_same_lock_name_in_two_workspaces_names_two_resources() -> None:
    w = World()
    a, b = w.start(locked(), workspace="team-a"), w.start(locked(), workspace="team-b")
    assert set(w.running()) == {(a, "s"), (b, "s")}


def writes(path: str, url: str | None = None) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"id": "w", "tool": "files.write", "input": {"path": path, "content": "x"}}
    ]
    if url:
        steps.append({"id": "get", "tool": "http.request", "input": {"url": url}})
    return {"steps": steps}


def test_running_executions_that_write_the_same_target_are_told_so_both_of_them() -> None:
    w = World()
    a = w.start(writes("out/${input.name}.md"), name="report")
    b = w.start(writes("out/report.md"))
    other = w.start(writes("out/other.md"))
    (on_a,), (on_b,) = w.of(a, c.ExecutionConflictDetected), w.of(b, c.ExecutionConflictDetected)
    assert on_a.with_executions == [b] and on_b.with_executions == [a]
    assert on_a.resources == on_b.resources == ["file:default/out/report.md"]
    assert not w.of(other, c.ExecutionConflictDetected)
    w.finish(a, "w")
    late = w.start(writes("out/report.md"))
    assert [x.with_executions for x in w.of(late, c.ExecutionConflictDetected)] == [[b]]
    view = fold([e for e in w.events if e.aggregate_id == b])
    assert view is not None  # b was told about this resource once, when it first clashed
    assert [x["with_executions"] for x in view["conflicts"]] == [[str(a)]]


def test_many_writers_of_one_target_make_one_conflict_event_each() -> None:
    w = World()
    ids = [w.start(writes("shared.md")) for _ in range(30)]
    events = [e for e in w.events if isinstance(e, c.ExecutionConflictDetected)]
    assert len(events) == 30  # the first is told once; each later one once, naming the others
    assert len(w.of(ids[-1], c.ExecutionConflictDetected)[0].with_executions) == 20


def test_a_get_is_a_read_and_a_post_to_the_same_url_is_a_write() -> None:
    w = World()
    get = {"steps": [{"id": "g", "tool": "http.request", "input": {"url": "http://x/y"}}]}
    post = {"steps": [{"id": "p", "tool": "http.request",
                       "input": {"url": "http://x/y", "method": "POST"}}]}  # fmt: skip
    w.start(get), w.start(get)
    p1, p2 = w.start(post), w.start(post)
    assert w.of(p2, c.ExecutionConflictDetected)[0].resources == ["url:http://x/y"]
    assert w.of(p1, c.ExecutionConflictDetected)[0].with_executions == [p2]


def test_executions_in_flight_wait_for_a_place_and_all_their_steps_start_when_they_get_one() -> (
    None
):
    w = World(policy=WorkspacePolicy(max_executions_in_flight=1))
    fan = {"steps": [{"id": f"s{i}", "tool": "mock.agent"} for i in range(2)]}
    first, second = w.start(fan), w.start(fan)
    assert sorted(w.running()) == sorted([(first, "s0"), (first, "s1")])
    assert {x.waiting_for for x in w.of(second, c.StepWaiting)} == {"quota"}
    w.finish(first, "s0")
    w.tick(0.1)
    assert not any(e == second for e, _ in w.running())  # a place is held to the end
    w.finish(first, "s1")
    assert w.of(first, c.ExecutionSucceeded)
    w.tick(0.1)
    assert sorted(w.running()) == sorted([(second, "s0"), (second, "s1")])


def test_the_installations_cap_holds_over_a_workspace_without_one() -> None:
    from baton_common.workspaces import InstallationLimits

    limits = InstallationLimits(BATON_MAX_EXECUTIONS_IN_FLIGHT=1)
    w = World(policy=limits.applied(WorkspacePolicy(max_executions_in_flight=5)))
    one = {"steps": [{"id": "a", "tool": "mock.agent"}]}
    first, second = w.start(one), w.start(one)
    assert (first, "a") in w.running() and not any(e == second for e, _ in w.running())
    assert {x.waiting_for for x in w.of(second, c.StepWaiting)} == {"quota"}


def test_running_work_goes_first_and_a_place_freed_is_handed_to_the_queue_in_the_same_batch() -> (
    None
):
    w = World(steps_in_flight=2)
    chain = {"steps": [{"id": "a", "tool": "mock.agent"},
                       {"id": "b", "tool": "mock.agent", "depends_on": ["a"]}]}  # fmt: skip
    one, _two, three = w.start(chain), w.start(chain), w.start(chain)
    assert w.of(three, c.StepWaiting) and not w.of(one, c.StepWaiting)
    w.finish(one, "a")  # its next step takes the place it freed: no wait, no timer
    assert (one, "b") in w.running() and not w.of(one, c.StepWaiting)
    w.finish(one, "b")  # the execution ends: its place goes to the queue in this batch
    assert (three, "a") in w.running()


def test_max_steps_per_minute_spaces_a_workspaces_steps() -> None:
    w = World(policy=WorkspacePolicy(max_steps_per_minute=60))
    eid = w.start({"steps": [{"id": f"s{i}", "tool": "mock.agent"} for i in range(3)]})
    waits = w.of(eid, c.StepWaiting)
    assert [(x.waiting_for, (x.until - w.now).total_seconds()) for x in waits] == [
        ("rate", 1.0),
        ("rate", 2.0),
    ]
    assert "default/steps is limited to 60/60s" in waits[0].reason


def test_a_retry_holds_its_locks_through_a_wait_longer_than_their_lease() -> None:
    w = World()
    a = w.start(locked())
    w.finish(a, "s", ok=False, retry_after_s=600)  # the upstream asked for ten minutes
    w.tick(300)  # past the first lease (timeout 60 s + 60 s), well before the retry
    b = w.start(locked())
    assert w.of(b, c.StepWaiting)[0].holders == [f"{a}:s"]


def booking(step: str, room: str, calendar: str | None = None, **extra: Any) -> dict[str, Any]:
    data = {"title": step, "start": "2082-11-26T10:00:00Z", "end": "2082-11-26T11:00:00Z",
            "resources": [room], **({"calendar": calendar} if calendar else {})}  # fmt: skip
    return {"id": step, "tool": "calendar.create_event", "input": data, **extra}


def test_bookings_of_one_room_run_one_after_the_other_and_other_rooms_do_not_wait() -> None:
    w = World()
    plan = {"steps": [booking("a", "room-4", "ann"), booking("b", "room-4", "bob"),
                      booking("c", "room-5", "cho")]}  # fmt: skip
    eid = w.start(plan)
    assert set(w.running()) == {(eid, "a"), (eid, "c")}
    [waiting] = w.of(eid, c.StepWaiting)
    assert (waiting.step_id, waiting.waiting_for, waiting.locks) == (
        "b",
        "locks",
        ["calendar:bob", "calendar:room-4"],
    )
    assert waiting.holders == [f"{eid}:a"]
    w.finish(eid, "a", output={"uid": "u"})  # its event is committed: b checks against it
    w.tick(0.5)
    assert (eid, "b") in w.running()


def test_executions_booking_the_same_calendar_are_told_so() -> None:
    w = World()
    first = w.start({"steps": [booking("a", "room-4")]})
    second = w.start({"steps": [booking("a", "room-4", "team")]})
    [told] = w.of(second, c.ExecutionConflictDetected)
    assert told.resources == ["lock:default:calendar:room-4"] and told.with_executions == [first]


def counted_reads(w: World) -> list[str]:
    """The names of the places in flight the admission reads from the store, one per read."""
    reads: list[str] = []
    usage = w.store.slot_usage

    def slot_usage(names: Any, now: datetime) -> Any:
        reads.extend(names)
        return usage(names, now)

    w.store.slot_usage = slot_usage  # type: ignore[method-assign]
    return reads


def places_held(w: World, workspace: str = "default") -> int:
    rows = w.store.lock_rows([f"slot:steps:{workspace}"])
    return sum(1 for r in rows if r.live(w.now))


CHAIN5 = {"steps": [{"id": "s0", "tool": "mock.agent"}]
          + [{"id": f"s{i}", "tool": "mock.agent", "depends_on": [f"s{i - 1}"]} for i in range(1, 5)]}  # fmt: skip


def test_a_chains_next_step_takes_the_place_its_last_step_freed_without_a_read() -> None:
    w = World(steps_in_flight=1)
    reads = counted_reads(w)
    eid = w.start(CHAIN5)
    assert reads == ["slot:steps:default"]  # the first step: nothing freed yet, so a read
    for i in range(4):
        w.finish(eid, f"s{i}")
        assert (eid, f"s{i + 1}") in w.running() and places_held(w) == 1
    assert reads == ["slot:steps:default"]  # four hand-overs inside the execution, no read
    w.finish(eid, "s4")  # the end: its first step's read saw no queue a moment ago, no read
    assert w.of(eid, c.ExecutionSucceeded) and places_held(w) == 0
    assert reads == ["slot:steps:default"]
    assert not w.of(eid, c.StepWaiting)


def test_a_chains_end_reads_for_a_queue_when_its_last_look_is_old() -> None:
    w = World(steps_in_flight=1)
    reads = counted_reads(w)
    eid = w.start(CHAIN5)
    for i in range(4):
        w.finish(eid, f"s{i}")
    w.now += timedelta(seconds=NO_QUEUE_FRESH_S + 1)
    w.finish(eid, "s4")
    assert w.of(eid, c.ExecutionSucceeded) and reads == ["slot:steps:default"] * 2


def replica(w: World) -> World:
    """Another executor replica over the same store (its own admission and memory)."""
    steps = w.app.admission.steps_in_flight
    other = World(steps_in_flight=steps, policy=w.policy)
    other.store, other.events, other.now = w.store, w.events, w.now
    admission = StoreAdmission(w.store, lambda _ws: w.policy, steps_in_flight=steps)
    other.app = ExecutorApp(w.store, admission=admission)
    return other


def test_a_queue_another_replica_made_gets_the_place_a_chains_end_frees_without_a_read() -> None:
    w = World(steps_in_flight=1)
    first = w.start(CHAIN5)  # this replica read the places: nobody queued
    b = replica(w)
    second = b.start(CHAIN5)  # the other replica queues behind the place first holds
    assert [x.waiting_for for x in w.of(second, c.StepWaiting)] == ["quota"]
    reads = counted_reads(w)
    for i in range(5):
        w.finish(first, f"s{i}")
    assert reads == [] and places_held(w) == 0  # no read at the end: no hand-over in the batch
    w.tick(1)  # the store gave the first waiter a due-now timer when the place was freed
    assert (second, "s0") in w.running() and places_held(w) == 1


def test_a_handed_over_place_keeps_the_bound_and_the_queue_gets_it_at_the_end() -> None:
    w = World(steps_in_flight=1)
    first = w.start(CHAIN5)
    second = w.start(CHAIN5)
    assert [x.waiting_for for x in w.of(second, c.StepWaiting)] == ["quota"]
    for i in range(4):  # each of the first's steps gives its place to the next one
        w.finish(first, f"s{i}")
        assert places_held(w) == 1 and not any(e == second for e, _ in w.running())
    w.finish(first, "s4")
    assert (second, "s0") in w.running() and places_held(w) == 1


def test_a_step_of_a_state_reloaded_from_the_store_reads_the_places() -> None:
    w = World(steps_in_flight=1)
    eid = w.start(CHAIN5)
    w.app.cache.clear()  # e.g. after a conflict: what it held is not known, only stored
    reads = counted_reads(w)
    w.finish(eid, "s0")
    assert reads and (eid, "s1") in w.running() and places_held(w) == 1


def test_a_place_whose_lease_is_near_its_end_is_read_again() -> None:
    w = World(steps_in_flight=1)
    eid = w.start(CHAIN5)
    reads = counted_reads(w)
    w.now += timedelta(seconds=115)  # the claim lapses at 120 s (timeout 60 s + 60 s)
    w.finish(eid, "s0")
    assert reads == ["slot:steps:default"] and (eid, "s1") in w.running()


def test_an_execution_queued_for_a_step_place_stays_in_memory_one_for_an_execution_place_parks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Queued behind the workspace's steps in flight, an execution is woken as soon as a step
    ends: it stays in memory (a read of it from the store at every wake was the largest cost of
    saturation through workers). One queued for an execution's place, or for a lock, may wait
    long: it parks, and the store holds it."""
    w = World(steps_in_flight=1)
    one = {"steps": [{"id": "s", "tool": "mock.agent"}]}
    first, second = w.start(one), w.start(one)
    assert (first, "s") in w.running() and w.of(second, c.StepWaiting)
    assert second in w.app.cache
    loads: list[UUID] = []
    load = w.store.load
    monkeypatch.setattr(w.store, "load", lambda eid: loads.append(eid) or load(eid))
    w.finish(first, "s")
    w.tick(0.1)
    assert (second, "s") in w.running()
    assert second not in loads  # woken from memory

    capped = World(policy=WorkspacePolicy(max_executions_in_flight=1))
    first, second = capped.start(one), capped.start(one)
    assert capped.of(second, c.StepWaiting) and second not in capped.app.cache
    held = World()
    first, second = held.start(locked()), held.start(locked())
    assert held.of(second, c.StepWaiting) and second not in held.app.cache


def counted_commits(w: World) -> list[Commit]:
    commits: list[Commit] = []
    commit = w.store.commit

    def counted(c: Commit) -> Any:
        commits.append(c)
        return commit(c)

    w.store.commit = counted  # type: ignore[method-assign]
    return commits


def test_an_executions_first_step_takes_a_place_unread_and_its_commit_checks_the_bound() -> None:
    """No read of the workspace's places in a whole chain: its first step's place is checked
    in the commit that starts it, the next ones are handed on, and its end reads no queue."""
    w = World(steps_in_flight=4)
    reads, commits = counted_reads(w), counted_commits(w)
    eid = w.start(CHAIN5)
    assert (eid, "s0") in w.running() and places_held(w) == 1
    assert commits[0].places_checked == [("slot:steps:default", 4)]
    for i in range(5):
        w.finish(eid, f"s{i}")
    assert w.of(eid, c.ExecutionSucceeded) and places_held(w) == 0
    assert reads == [] and not w.of(eid, c.StepWaiting)
    assert [x.places_checked for x in commits[1:]] == [[]] * 5  # hand-overs are not checked


ONE = {"steps": [{"id": "s", "tool": "mock.agent"}]}


def test_a_place_another_replica_took_refuses_the_commit_and_the_step_queues_after_a_read() -> None:
    w = World(steps_in_flight=4)
    for _ in range(4):
        w.start(ONE)  # every place taken
    b = replica(w)  # knows nothing of them: it grants a fifth place unread
    eid = uuid4()
    event = c.PlanProposed(aggregate_id=eid, aggregate_version=1, execution_id=eid, plan=ONE,
                           planner="direct", inputs={}, workspace_id="default")  # fmt: skip
    with pytest.raises(ConcurrencyConflict):
        b.commit(b.app.handle([Delivery(event)], b.now))
    assert places_held(w) == 4 and not w.of(eid, c.StepDispatched)
    reads = counted_reads(b)
    b.app.invalidate()  # as the consumer does on a conflict, before it decides again
    b.commit(b.app.handle([Delivery(event)], b.now))
    assert reads == ["slot:steps:default"] and places_held(w) == 4
    assert [x.waiting_for for x in w.of(eid, c.StepWaiting)] == ["quota"]


def test_a_read_that_finds_the_places_half_taken_makes_the_next_grants_read() -> None:
    """This process counts its own places; another replica's are seen only in a read. One
    that found the places half taken makes this process read before granting for a while."""
    w = World(steps_in_flight=4)
    b = replica(w)
    b.start(ONE)
    b.start(ONE)  # half the places, held by the other replica
    reads = counted_reads(w)
    eid = w.start(CHAIN5)  # unread: this process holds none of them
    for i in range(5):
        if i == 4:  # its end reads for a queue (its last look is old), and finds them half taken
            w.now += timedelta(seconds=NO_QUEUE_FRESH_S + 1)
        w.finish(eid, f"s{i}")
    assert reads == ["slot:steps:default"]
    w.start(ONE)
    assert reads == ["slot:steps:default"] * 2 and places_held(w) == 3
    w.now += timedelta(seconds=CROWDED_S + 1)
    w.start(ONE)
    assert reads == ["slot:steps:default"] * 2 and places_held(w) == 4  # a while later: unread


def test_places_a_refused_batch_granted_are_not_counted_as_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refused commit wrote nothing: once the reads after the refusal are over, this
    process does not count the places that batch granted among its own."""
    w = World(steps_in_flight=4)
    ids = [w.start(ONE) for _ in range(4)]  # every place taken
    b = replica(w)
    with pytest.raises(ConcurrencyConflict):
        b.start(ONE)  # a place granted unread: refused
    b.app.invalidate()
    for eid in ids:
        w.finish(eid, "s")
    later = time.monotonic() + CROWDED_S + 1
    monkeypatch.setattr(admission, "time", SimpleNamespace(monotonic=lambda: later))
    reads = counted_reads(b)
    b.start({"steps": [{"id": f"s{i}", "tool": "mock.agent"} for i in range(2)]})
    assert reads == [] and places_held(w) == 2  # two unread: it holds none of the four
