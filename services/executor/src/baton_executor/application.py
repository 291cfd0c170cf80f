"""The executor application: load executions, hand them commands, collect what to commit.

Executions are cached in memory between batches while they run; the cache is dropped whenever a
commit fails (a lost race with another replica, or any error), so state is always reloaded from
the store. One that ended, or is parked (it waits for a person, a timer or a place: see
sleeping.py), leaves the cache once committed: waiting executions live in PostgreSQL only, and
the decision, timer or command that wakes one loads it again.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.approvals import QUESTION_GATE
from baton_common.consumer import Delivery
from baton_common.events import Event
from baton_common.plans import Plan, PlanInvalid, validate_plan
from baton_common.store import (
    Commit,
    MemoryEventStore,
    PostgresEventStore,
    Timer,
    clearing_fired,
)

from baton_executor.admission import StoreAdmission
from baton_executor.cache import NoCache, ResultCache
from baton_executor.domain import Envelope, Execution
from baton_executor.inline import InlineRunner, never
from baton_executor.simulate import SimulationInvalid, simulation_of
from baton_executor.state import TERMINAL
from baton_executor.workspace_context import WorkspaceContext

log = logging.getLogger(__name__)
LEFT_KEPT = 100_000  # ids of executions that left the cache, remembered (about 10 MB)

SUBJECTS = [
    "*.plan.proposed",
    "*.execution.requested",
    "*.execution.pause_requested",
    "*.execution.resume_requested",
    "*.execution.cancel_requested",
    "*.task.finished",
    "*.approval.granted",
    "*.approval.rejected",
    "*.execution.context_put_requested",
    "*.context.put_requested",
    "*.execution.agent_message_posted",
    "*.cache.clear_requested",
    "*.relay.event_parked",
]


class ExecutorApp:
    """Turns plans, commands, task results and timers into execution events."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        cache_size: int = 50_000,
        admission: StoreAdmission | None = None,
        results: ResultCache | None = None,
        inline: InlineRunner = never,
    ) -> None:
        self.store = store
        self.admission = admission or StoreAdmission(store)
        self.results = results or NoCache()
        self.inline = inline
        self.workspace_context = WorkspaceContext(store)
        self.cache: dict[UUID, Execution] = {}
        self.cache_size = cache_size
        self.check_store_until = 0.0
        # Executions that ended or parked (and left the cache): their ids only, so a late plan
        # or duplicate start for one is looked up in the store instead of taken for a new one.
        self.left: OrderedDict[UUID, None] = OrderedDict()
        self._touched: dict[UUID, Execution] = {}  # executions the batch changed
        # Executions with pure steps to run once the commit being made is done (follow_up).
        self.due: dict[UUID, Execution] = {}

    def load(self, execution_id: UUID) -> Execution | None:
        found = self.cache.get(execution_id)
        if found is None:
            found = Execution.rebuild(execution_id, self.store.load(execution_id))
            if found is not None:
                self._remember(found)
        return found

    def _remember(self, execution: Execution) -> None:
        if len(self.cache) >= self.cache_size:
            for key in [
                k for k, v in self.cache.items() if v.status in {"succeeded", "failed", "cancelled"}
            ]:
                del self.cache[key]
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
        execution.admission = self.admission  # commands may ask; a rebuild never does
        execution.results = self.results
        execution.inline = self.inline
        execution.workspace_context = self.workspace_context
        self.cache[execution.id] = execution

    def invalidate(self) -> None:
        """Forget cached state, and check the store for new executions for a while: a commit
        failed, perhaps because another replica (or a redelivery) got there first."""
        self.cache.clear()
        self.due.clear()  # their steps' timers run them, from the store's state
        self.admission.conflicted()  # a place's bound may have refused it: read before granting
        self.check_store_until = time.monotonic() + 10

    def _existing(self, execution_id: UUID) -> Execution | None:
        """For a plan: a new execution id is new unless a recent conflict says to look."""
        if execution_id in self.left or time.monotonic() < self.check_store_until:
            return self.load(execution_id)
        return self.cache.get(execution_id)

    def handle(self, deliveries: list[Delivery], now: datetime | None = None) -> Commit:
        now = now or datetime.now(UTC)

        def apply(touched: dict[UUID, Execution]) -> None:
            for delivery in deliveries:
                execution = self._apply(delivery.event, now)
                if execution is not None:
                    touched[execution.id] = execution

        return self._decide(apply, now)

    def fire(self, timers: list[Timer], now: datetime | None = None) -> Commit:
        now = now or datetime.now(UTC)

        self._forget_stale([UUID(t.payload["execution_id"]) for t in timers])

        def apply(touched: dict[UUID, Execution]) -> None:
            for timer in timers:
                execution = self.load(UUID(timer.payload["execution_id"]))
                if execution is not None:
                    execution.timer_fired(timer.payload, now)
                    touched[execution.id] = execution

        return clearing_fired(self._decide(apply, now), timers)

    def _forget_stale(self, execution_ids: list[UUID]) -> None:
        """Drop the cached executions another replica has written since: a due timer may come
        from that write (a retry after the step failed there), and the cached state, which
        never saw it, would ignore the timer and clear it (the step never retried)."""
        cached = {i: self.cache[i].version for i in set(execution_ids) if i in self.cache}
        if not cached:
            return
        stored = self.store.versions(list(cached))
        for execution_id, version in cached.items():
            if stored.get(execution_id, 0) > version:
                del self.cache[execution_id]

    def follow_up(self, now: datetime | None = None) -> Commit | None:
        """After a commit: run the pure steps it dispatched, and what they free; the next
        commit to make, or None when nothing was waiting for the last one."""
        if not self.due:
            return None
        now = now or datetime.now(UTC)
        due, self.due = self.due, {}

        def apply(touched: dict[UUID, Execution]) -> None:
            for execution in due.values():
                if self.cache.get(execution.id) is execution:  # not reloaded since
                    execution.run_inline_due(now)
                    touched[execution.id] = execution

        return self._decide(apply, now)

    def _decide(self, apply: Callable[[dict[UUID, Execution]], None], now: datetime) -> Commit:
        """One batch of commands: ``apply`` changes executions and names them in ``touched``;
        the places it freed go to the queue in the same batch; then what to commit."""
        self.admission.begin()
        self.workspace_context.begin()  # keys are read afresh in every batch
        touched: dict[UUID, Execution] = {}
        self._touched = touched
        try:
            apply(touched)
            self._hand_over(touched, now)
            return self._commit(touched.values())
        finally:  # a parked execution must not stay in memory through the last batch's list
            self._touched = {}

    def _hand_over(self, touched: dict[UUID, Execution], now: datetime) -> None:
        """Let the first queued steps ask for the places this batch freed, in this batch."""
        for payload in self.admission.handoffs(now):
            execution = self.load(UUID(payload["execution_id"]))
            if execution is not None:
                execution.timer_fired(payload, now)
                touched[execution.id] = execution

    def _apply(self, event: Event, now: datetime) -> Execution | None:
        execution_id = event.__dict__.get("execution_id") or event.aggregate_id
        if isinstance(event, c.CacheClearRequested):
            self.results.clear(event.workspace_id, event.tool)
            return None
        if isinstance(event, c.WorkspaceContextPutRequested):
            self.workspace_context.put(event)  # committed with this batch (see _commit)
            return None
        if isinstance(event, c.PlanProposed):
            return self._start(self._existing(execution_id), event, event.plan, now)
        if isinstance(event, c.ExecutionRequested):  # a plan given directly skips the planner
            if event.plan is None:
                return None
            return self._start(self._existing(execution_id), event, event.plan, now)
        if isinstance(event, c.EventParked):
            return self._parked(event, now)
        if event.__dict__.get("step_id") == QUESTION_GATE:
            return None  # the planner's question: the planner takes its answer, not the executor
        execution = self.load(execution_id)
        if execution is None:
            if isinstance(event, c.ExecutionCancelRequested):  # cancelled before its plan arrived
                execution = Execution(execution_id)
                execution.envelope = _envelope(event)
                execution.cancel(event.reason, now)
                self._remember(execution)
                return execution
            log.info("ignoring %s for unknown execution %s", event.type, execution_id)
            return None
        if isinstance(event, c.TaskFinished) and _dispatched_elsewhere(execution, event):
            del self.cache[execution.id]
            execution = self.load(execution_id) or execution
        execution.envelope.causation_id = event.event_id
        if isinstance(event, c.TaskFinished):
            execution.task_finished(event, now)
        elif isinstance(event, c.ExecutionPauseRequested):
            execution.pause(event.reason)
        elif isinstance(event, c.ExecutionResumeRequested):
            execution.resume(now)
        elif isinstance(event, c.ExecutionCancelRequested):
            execution.cancel(event.reason, now)
        elif isinstance(event, c.ApprovalGranted):
            ws = event.workspace_id
            execution.approval_granted(event, now, lambda plan: self._refused_tool(plan, ws))
        elif isinstance(event, c.ApprovalRejected):
            execution.approval_rejected(event, now)
        elif isinstance(event, c.ContextPutRequested | c.AgentMessagePosted):
            execution.coordination_command(event)
            execution.advance(now)
        return execution

    def _parked(self, event: c.EventParked, now: datetime) -> Execution | None:
        """An event of an execution could not be published (a relay parked it): the execution
        fails with the reason, also one that never reached this executor (its request or
        plan was the event parked)."""
        if event.correlation_id is None:
            return None  # not about an execution
        execution = self.load(event.correlation_id)
        if execution is None:
            execution = Execution(event.correlation_id)
            execution.envelope = _envelope(event)
            self._remember(execution)
        execution.envelope.causation_id = event.event_id
        execution.fail_from_outside(f"an event of this execution was parked: {event.reason}", now)
        return execution

    def _start(
        self,
        execution: Execution | None,
        event: c.PlanProposed | c.ExecutionRequested,
        data: dict[str, Any],
        now: datetime,
    ) -> Execution | None:
        if execution is not None:
            return None  # already started (or cancelled before it could start)
        execution = Execution(event.__dict__.get("execution_id") or event.aggregate_id)
        execution.envelope = _envelope(event)
        self._remember(execution)
        try:
            plan = validate_plan(data, inputs=event.inputs)
        except PlanInvalid as exc:  # validated upstream: the catalogues differ (a rolling update?)
            execution.reject(f"the plan cannot run on this executor: {exc}")
            return execution
        try:
            simulation = simulation_of(event, self.store, plan)
        except SimulationInvalid as exc:
            execution.reject(str(exc))
            return execution
        if refused := self._refused_tool(plan, event.workspace_id):
            execution.reject(refused)  # the policy may have changed since the gateway checked
        elif simulation is not None:  # a rehearsal: nobody reviews it, it conflicts with nothing
            execution.start(plan, event.inputs, event.request, now, simulation=simulation)
        else:
            review = plan.review(asked=getattr(event, "review_plan", False))
            execution.start(plan, event.inputs, event.request, now, review)
            self._detect_conflicts(execution)
        return execution

    def _detect_conflicts(self, execution: Execution) -> None:
        """Record, on this execution and on each running one it shares a written resource with,
        that they may overwrite each other."""
        if execution.status != "running":
            return
        written = execution.written_resources()
        if written:
            execution.holds_claims = True  # its watches are given back when it ends
        shared = self.admission.watch(str(execution.id), written)
        by_other: dict[UUID, list[str]] = {}
        for resource, others in shared.items():
            for other_id in others:
                by_other.setdefault(UUID(other_id), []).append(resource)
        if not by_other:
            return
        execution.conflict_detected(sorted(shared), sorted(by_other))
        for uid, resources in by_other.items():
            other = self.load(uid)
            if other is not None:
                other.envelope.causation_id = execution.envelope.causation_id
                other.conflict_detected(resources, [execution.id])
                self._touched[other.id] = other

    def _refused_tool(self, plan: Plan, workspace: str) -> str | None:
        """Why the workspace's policy refuses one of the plan's tools, if it does."""
        policy = self.admission.policies(workspace)
        for step in plan.steps:
            calls = [step.tool, *(a.tool for a in step.alternatives)]
            calls += [step.compensate.tool] if step.compensate else []
            for tool in calls:
                if reason := policy.tool_allowed(tool):
                    return f"step {step.id!r}: {reason}"
        return None

    def _commit(self, executions: Iterable[Execution]) -> Commit:
        events: list[Event] = []
        timers: list[Timer] = []
        clear: list[str] = []
        for execution in executions:
            new_events = execution.collect()
            execution.offer_results(new_events, datetime.now(UTC))  # the smart cache (cache.py)
            events += new_events
            new, gone = execution.collect_timers()
            timers += new
            clear += gone
            if execution.inline_due:
                self.due[execution.id] = execution
            if execution.status in TERMINAL or execution.parked():
                self._leave(execution)
        events += self.workspace_context.collect()  # keys written or deleted through the API
        release, put, extend = self.admission.changes()
        return Commit(
            events=events,
            timers_set=timers,
            timers_clear=clear,
            locks_release=release,
            locks_put=put,
            locks_extend=extend,
            places_checked=self.admission.bounds(),
        )

    def _leave(self, execution: Execution) -> None:
        """Nothing will happen to it here until something wakes it: free its memory (what wakes
        it, or a late message, loads it from the store)."""
        self.cache.pop(execution.id, None)
        self.left[execution.id] = None
        if len(self.left) > LEFT_KEPT:
            self.left.popitem(last=False)


def _envelope(event: Event) -> Envelope:
    return Envelope(
        event.workspace_id,
        event.correlation_id or event.aggregate_id,
        event.event_id,
        event.traceparent,
    )


def _dispatched_elsewhere(execution: Execution, result: c.TaskFinished) -> bool:
    """The result of an attempt this (cached) state never dispatched: another replica did,
    after this copy was cached. Handled on this copy, it would be dropped as a stale result."""
    run = execution.steps.get(result.step_id)
    return run is None or result.attempt > run.attempt
