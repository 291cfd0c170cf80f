"""The Execution aggregate: a plan's run, step by step. No I/O: commands in, events out.

Every decision (which steps are ready, retry or alternative or give up, when to compensate) is
made here and recorded as an event; the ``on_*`` methods fold events into state, so a rebuild
from the history lands on the same decisions. Timers (retry backoff, step deadlines) are asked
for alongside the events and stored in the same commit, so they survive a restart.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.approvals import PLAN_GATE, PLAN_TOOL, ApprovalPolicy, approval_id_for
from baton_common.events import Event
from baton_common.limits import TooLarge, check_size, one_event
from baton_common.plans import (
    Plan,
    ReferenceError_,
    Step,
    evaluate_condition,
    resolve,
)
from baton_common.simulation import Simulation
from baton_common.store import Timer

from baton_executor import simulate
from baton_executor.admitting import Admitting
from baton_executor.coordination import Coordination
from baton_executor.endings import Endings
from baton_executor.folding import Folding
from baton_executor.gates import Gates
from baton_executor.inline import InlineCall, InlineResult, InlineRunner, never
from baton_executor.ports import Admission, OpenAdmission
from baton_executor.sleeping import Sleeping
from baton_executor.state import (
    DEADLINE_GRACE_S,
    INLINE_RESUME_S,
    MAX_CONFLICT_PEERS,
    STEP_ACTIVE,
    STEP_DONE,
    TERMINAL,
    Envelope,
    StepRun,
    _admit_id,
    _deadline_id,
    _ends_step,
    _held_until,
    _known,
    _resume_id,
    _retry_due,
    _retry_id,
    _variant_call,
    _write_targets,
)
from baton_executor.workspace_context import NoWorkspaceContext, WorkspaceContextPort


class Execution(Gates, Admitting, Sleeping, Endings, Folding, Coordination, Aggregate):
    """A plan being run: step states, the compensation queue, and the outcome."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.sid = str(aggregate_id)  # the id in timer ids, keys and payloads: formatted once
        self.status = "new"
        self.plan: Plan | None = None
        self.inputs: dict[str, Any] = {}
        self.steps: dict[str, StepRun] = {}
        self.completed: list[str] = []  # run steps in the order they succeeded
        self.compensating: list[str] = []
        self.ending: tuple[str, str, str | None] | None = None  # (outcome, reason, failed step)
        self.paused = False
        self.envelope = Envelope("default", aggregate_id)
        self.timers_set: list[Timer] = []
        self.timers_clear: list[str] = []
        self._rng = random.Random(str(aggregate_id))
        self._parsed: Plan | None = None
        self.needs: dict[str, list[str]] = {}  # step id -> the steps it waits for (computed once)
        self.reviewing = False  # the plan waits at its own gate
        self.conflicts: set[str] = set()  # resources a conflict was recorded for
        self.admission: Admission = OpenAdmission()  # set by the application before commands
        self.simulation: Simulation | None = None  # a dry run, mock or replay: no side effects
        self.inline: InlineRunner = never  # set by the application: pure tools run in process
        self.workspace_context: WorkspaceContextPort = NoWorkspaceContext()  # the application's
        # Inline results not yet folded in: (step, attempt, kind, result); advance() drains them.
        self._settling: list[tuple[str, int, c.StepKind, InlineResult]] = []
        # Steps whose outcome is decided but not committed yet: a pure step that depends on
        # one of them waits for the commit (``inline_due``), so every outcome is durable before
        # what follows it starts.
        self._undurable: set[str] = set()
        # A pure step waits for this command's commit: the application runs ``run_inline_due``
        # once it is done (and the resume timer in that commit does, after a restart).
        self.inline_due = False
        # When the resume timer this process last wrote falls due (None: none written, or
        # cleared). A chain of pure steps keeps one row instead of rewriting it every commit.
        self._resume_due: datetime | None = None
        # A pure step settled at its dispatch: advance() looks again (the next compensation).
        self._again = False
        # Whether it holds claims to give back when it ends (a place in flight, the resources it
        # writes); unknown after a restart, so given back anyway then.
        self.holds_claims = True

    # --- commands ---------------------------------------------------------------------------------

    def start(
        self,
        plan: Plan,
        inputs: dict[str, Any],
        request: str | None,
        now: datetime,
        review: ApprovalPolicy | None = None,
        simulation: Simulation | None = None,
    ) -> None:
        self._parsed = plan  # spares on_started parsing the plan it was just given
        self.holds_claims = False  # new: nothing yet (admission and conflict watches add)
        self._event(
            c.ExecutionStarted,
            plan=plan.model_dump(mode="json"),
            inputs=inputs,
            request=request,
            simulation=simulation.model_dump(mode="json") if simulation else None,
        )
        if review is not None:  # nothing runs until a person approved (or edited) the plan
            self._event(
                c.StepApprovalRequested,
                step_id=PLAN_GATE,
                approval_id=approval_id_for(self.id, PLAN_GATE),
                tool=PLAN_TOOL,
                input={"plan": plan.model_dump(mode="json", exclude_defaults=True)},
                policy=review.model_dump(mode="json", exclude_defaults=True),
                message=review.message,
                reason="the plan waits for review",
            )
        self.advance(now)

    def conflict_detected(self, resources: list[str], others: list[UUID]) -> None:
        """Other running executions write the same resources: say so in the history, once per
        resource (a hundred executions posting to one URL are not told a hundred times each)."""
        new = [r for r in resources if r not in self.conflicts]
        if self.status == "running" and new and others:
            shown = others[:MAX_CONFLICT_PEERS]
            self._event(c.ExecutionConflictDetected, resources=new, with_executions=shown)

    def written_resources(self) -> list[str]:
        """What the plan writes, as far as it is known at start: exclusive locks, and the file,
        URL or calendar targets of write-class tools (a GET is a read). Values from steps are
        not known yet; those targets are left out."""
        assert self.plan is not None
        ws, found = self.envelope.workspace_id, set()
        scope = {"input": self.inputs, "steps": {}}
        for step in self.plan.steps:
            for lock in step.locks:
                if lock.mode == "exclusive":
                    found.add(_known(f"lock:{ws}:", lock.name, scope))
            for call in [
                step.model_dump(include={"tool", "input"}),
                *(a.model_dump() for a in step.alternatives),
            ]:
                found.update(_write_targets(ws, call["tool"], call["input"], scope))
        return sorted(r for r in found if r)

    def reject(self, error: str) -> None:
        """The plan cannot run here: the execution fails before it starts."""
        self._event(c.ExecutionFailed, error=error)

    def fail_from_outside(self, reason: str, now: datetime) -> None:
        """Something outside the plan makes it fail (an event of it could not be published):
        no new step starts; the ones running finish or time out, then it ends failed."""
        if self.status in TERMINAL:
            return
        if self.plan is None:  # it never started here
            self.reject(reason)
            return
        if self.ending is None:
            self.ending = ("failed", reason, None)
        self.advance(now)  # skips what has not started, closes gates, ends when nothing runs

    def task_finished(self, result: c.TaskFinished, now: datetime) -> None:
        self._settle(
            result.step_id,
            result.attempt,
            result.kind,
            InlineResult(
                ok=result.ok,
                output=result.output,
                error=result.error,
                retryable=result.retryable,
                duration_ms=result.duration_ms,
                ask=result.ask,
            ),
            now,
            result.retry_after_s or 0.0,
        )
        self.advance(now)

    def _settle(
        self,
        step_id: str,
        attempt: int,
        kind: c.StepKind,
        result: InlineResult,
        now: datetime,
        retry_after_s: float = 0.0,
    ) -> None:
        """Record one attempt's outcome (a worker's report, or an inline run's)."""
        run = self.steps.get(step_id)
        if run is None or run.attempt != attempt or not self._awaiting(run, kind):
            return  # a late or duplicate result of an attempt already decided
        self.timers_clear.append(_deadline_id(self.sid, step_id, attempt))
        if result.ok:
            self._succeeded(step_id, attempt, kind, result)
        elif result.ask is not None and self._may_ask(run, kind):
            self._asked(step_id, attempt, result.ask)  # gates.py: a person decides
        else:
            self._failed(
                step_id, kind, result.error or "failed", result.retryable, now, retry_after_s
            )

    def _succeeded(
        self,
        step_id: str,
        attempt: int,
        kind: c.StepKind,
        result: InlineResult,
        call: c.StepCall | None = None,
    ) -> None:
        self._event(
            c.StepSucceeded,
            step_id=step_id,
            attempt=attempt,
            kind=kind,
            output=result.output,
            duration_ms=result.duration_ms,
            call=call,
        )

    def timer_fired(self, payload: dict[str, Any], now: datetime) -> None:
        if self.coordination_timer(payload):  # a message wait ran out (messenger.py)
            self.advance(now)
            return
        if self.sleep_timer(payload, now):  # a durable sleep ended (sleeping.py)
            return
        if payload["kind"] == "resume":  # pure steps waited for a commit, then the executor died
            self._resume_due = None  # the row is gone with the firing
            self.advance(now)
            return
        if payload["kind"] == "admit_all":  # the execution got its place in flight
            if not self.paused and self.ending is None:
                for waiting in [s for s, r in self.steps.items() if r.status == "waiting"]:
                    self._dispatch(waiting, now)
            self.advance(now)
            return
        step_id, attempt = payload["step_id"], int(payload["attempt"])
        run = self.steps.get(step_id)
        if run is None or run.attempt != attempt:
            return
        if payload["kind"] == "retry" and run.status == "retry_wait":
            if not self.paused:  # else resume starts it: pause starts nothing new
                self._dispatch(step_id, now)
        elif payload["kind"] == "admit" and run.status == "waiting":
            if not self.paused and self.ending is None:
                rate_at = payload.get("rate_at")
                self._dispatch(
                    step_id, now, rate_at=datetime.fromisoformat(rate_at) if rate_at else None
                )
        elif payload["kind"] == "deadline" and payload.get("inline"):
            self._run_inline(step_id, attempt, payload.get("task", "run"), now)  # after a restart
        elif payload["kind"] == "deadline" and self._awaiting(run, payload.get("task", "run")):
            error = f"no result within {payload.get('after_s', 0):.0f}s (worker lost or stuck)"
            self._failed(step_id, payload.get("task", "run"), error, True, now)
        self.advance(now)

    def pause(self, reason: str | None) -> None:
        if self.status == "running" and not self.paused:
            self._event(c.ExecutionPaused, reason=reason)

    def resume(self, now: datetime) -> None:
        if self.paused and self.status == "running":
            self._event(c.ExecutionResumed)
            for step_id in [s for s, r in self.steps.items() if r.status == "waiting"]:
                self._dispatch(step_id, now)  # ask again: nothing was admitted while paused
            for step_id, run in self.steps.items():
                if _retry_due(run, now):  # it fell due while paused: its timer did nothing
                    self.timers_clear.append(_retry_id(self.sid, step_id, run.attempt))
                    self._dispatch(step_id, now)
            self.advance(now)

    def cancel(self, reason: str | None, now: datetime) -> None:
        if self.status in TERMINAL or self.ending is not None:
            return
        if self.plan is None:  # cancelled before its plan arrived
            self._event(c.ExecutionCancelled, reason=reason)
            return
        self._event(c.ExecutionCancelling, reason=reason)
        for step_id, run in self.steps.items():
            if run.status in STEP_ACTIVE or run.status == "waiting_approval":
                self._clear_sleep(step_id, run)
                self.timers_clear.append(_deadline_id(self.sid, step_id, run.attempt))
                self.timers_clear.append(_retry_id(self.sid, step_id, run.attempt))
                self.timers_clear.append(_admit_id(self.sid, step_id))
                self._event(
                    c.StepCancelled,
                    step_id=step_id,
                    reason="execution cancelled",
                    approval_id=run.gate if run.status == "waiting_approval" else None,
                )
        self.advance(now)

    # --- the scheduler ----------------------------------------------------------------------------

    def advance(self, now: datetime) -> None:
        """Start what can start; when nothing more can, compensate or finish. Steps run inline
        end here too, so a chain of pure steps is decided to its end in one command."""
        self._advance(now)
        while self._settling or self._again:
            self._again = False
            settling, self._settling = self._settling, []
            for step_id, attempt, kind, result in settling:
                self._settle(step_id, attempt, kind, result, now)
            self._advance(now)

    def _advance(self, now: datetime) -> None:
        if self.plan is None or self.status in TERMINAL:
            return
        if self.reviewing:
            if self.ending is None:
                return  # the plan waits for its review
            self._event(c.StepCancelled, step_id=PLAN_GATE, reason="not run: " + self.ending[0])
        if self.status == "compensating":
            self._next_compensation(now)
            return
        if self.ending is None and not self.paused:
            self._start_ready(now)
            while self.coordinated and self.ending is None:  # steps done at dispatch free more
                self.coordinated = False
                self._start_ready(now)
        if self.ending is not None:
            self._skip_pending("not run: " + self.ending[0])
            self._close_gates("not run: " + self.ending[0])
        if not any(r.status in STEP_ACTIVE for r in self.steps.values()):
            if self.ending is None and all(r.status in STEP_DONE for r in self.steps.values()):
                self._finish_success()
            elif self.ending is not None:
                self._begin_compensation(now)

    def _start_ready(self, now: datetime) -> None:
        assert self.plan is not None
        running = sum(1 for r in self.steps.values() if r.status in STEP_ACTIVE)
        for step in self.plan.steps:
            run = self.steps[step.id]
            if run.status != "pending":
                continue
            needs = [self.steps[d].status for d in self.needs[step.id]]
            if any(s in {"skipped", "failed", "cancelled"} for s in needs):
                self._event(c.StepSkipped, step_id=step.id, reason="a dependency did not succeed")
                continue
            if any(s != "succeeded" for s in needs) or running >= self.plan.max_parallel:
                continue
            if step.when and not self._condition(step):
                self._event(
                    c.StepSkipped, step_id=step.id, reason=f"condition is false: {step.when}"
                )
                continue
            if self.ending is not None:
                return
            self._dispatch(step.id, now)
            running += 1

    def _condition(self, step: Step) -> bool:
        try:
            return evaluate_condition(str(step.when), self._scope())
        except (ReferenceError_, ValueError):
            return False

    def _dispatch(
        self,
        step_id: str,
        now: datetime,
        kind: c.StepKind = "run",
        rate_at: datetime | None = None,
    ) -> None:
        assert self.plan is not None
        step, run = self.plan.step(step_id), self.steps[step_id]
        if kind == "compensate":
            assert step.compensate is not None
            call, attempt = step.compensate.model_dump(), run.attempt  # compensation is not retried
        else:
            call, attempt = _variant_call(step, run.variant), run.attempt + 1
        try:
            tool_input = resolve(call["input"], self._scope())
            # Outputs flow into inputs: several large ones could make one event too large.
            check_size("input", tool_input, one_event())
        except (ReferenceError_, TooLarge) as exc:
            error = (
                f"input reference: {exc}"
                if isinstance(exc, ReferenceError_)
                else f"{exc} (what one event may carry, BATON_MAX_EVENT_BYTES)"
            )
            self._event(
                c.StepFailed, step_id=step_id, attempt=attempt, kind=kind, error=error, final=True
            )
            self._on_final_failure(step_id, kind, error)
            return
        key = f"{self.sid}:{step_id}" + (":compensate" if kind == "compensate" else "")
        simulated = self.simulation is not None  # no gates, no admission (see simulate.py)
        if kind == "run" and run.variant == 0:
            if not simulated and self._held_at_gate(step, run, tool_input):
                return
            if run.approved_input is not None:
                tool_input = run.approved_input  # as approved (or edited) by people
        if kind == "run" and self.coordinate(step_id, call["tool"], tool_input, attempt, now):
            return  # context, messages, cache hits: done here (coordination.py)
        stand_in = simulate.directive(
            self.simulation, step, kind, call, tool_input, attempt, run.variant
        )
        inline_call = InlineCall(
            call["tool"],
            tool_input,
            self.sid,
            step_id,
            attempt,
            key,
            self.envelope.workspace_id,
        )
        sleeps = kind == "run" and self._sleeps_durably(call["tool"], tool_input)
        in_process = (
            not sleeps and not simulate.replaced(stand_in) and self.inline.accepts(inline_call)
        )
        if in_process and self._reads_undurable(step_id, kind):
            self._defer(now)  # it reads an outcome this command decided: after the commit
            return
        if (  # a durable sleep, like a pure step, takes no place in flight: no worker runs it
            kind == "run"
            and not simulated
            and not self._admitted(
                step, run, call["tool"], now, rate_at, in_process or sleeps, tool_input
            )
        ):
            return
        step_call = c.StepCall(
            tool=call["tool"],
            input=tool_input,
            idempotency_key=key,
            timeout_s=step.timeout,
            variant=run.variant,
            simulated=stand_in,
        )
        if sleeps:  # a timer row ends it (sleeping.py)
            self._sleep(step_id, attempt, step_call, now)
            return
        ran = self.inline(inline_call) if in_process else None
        if ran is not None and ran.ok:  # run and settled here: one event says both
            self._succeeded(step_id, attempt, kind, ran, step_call)
            self._again = True
            return
        self._event(
            c.StepDispatched,
            step_id=step_id,
            attempt=attempt,
            kind=kind,
            inline=ran is not None,
            agents=self.agent_names() if ran is None and kind == "run" else None,
            **dict(step_call),
        )
        if ran is not None:  # it failed here: advance() decides the retry or the ending
            self._settling.append((step_id, attempt, kind, ran))
            return
        after = step.timeout + DEADLINE_GRACE_S
        self.timers_set.append(
            Timer(
                _deadline_id(self.sid, step_id, attempt),
                now + timedelta(seconds=after),
                {
                    "execution_id": self.sid,
                    "kind": "deadline",
                    "task": kind,
                    "step_id": step_id,
                    "attempt": attempt,
                    "after_s": after,
                },
            )
        )

    def _defer(self, now: datetime) -> None:
        """A pure step waits, undispatched, for this command's commit. The commit carries the
        execution's resume timer: if the executor dies before the next command, the timer
        dispatches it then (it runs well before, in the normal course)."""
        if self.inline_due:
            return
        self.inline_due = True
        # The row already written is kept while it is more than a second away: it only has to
        # fall due some time after the executor could have died, and firing early is harmless
        # (it only advances the execution, from the store's state).
        if self._resume_due is None or self._resume_due - now < timedelta(seconds=1):
            self._resume_due = now + timedelta(seconds=INLINE_RESUME_S)
            self.timers_set.append(
                Timer(
                    _resume_id(self.sid),
                    self._resume_due,
                    {"execution_id": self.sid, "kind": "resume"},
                )
            )

    def _reads_undurable(self, step_id: str, kind: c.StepKind) -> bool:
        """Does the step depend on an outcome this command decided (not committed yet)?
        A compensation follows the one before it, whatever it is."""
        if not self._undurable:
            return False
        return kind == "compensate" or any(d in self._undurable for d in self.needs[step_id])

    def run_inline_due(self, now: datetime) -> None:
        """Dispatch the pure steps that waited for the last commit (the application calls this
        once that commit is done): they run now, and what they free may wait again."""
        self.inline_due = False  # its resume timer is cleared, or kept, by collect_timers
        self.advance(now)

    def _run_inline(self, step_id: str, attempt: int, kind: c.StepKind, now: datetime) -> None:
        """A pure step an earlier version dispatched to run after its commit (``StepDispatched``
        marked ``inline`` with no outcome): its deadline timer runs it after an upgrade."""
        run = self.steps.get(step_id)
        if run is None or run.attempt != attempt or not self._awaiting(run, kind):
            return  # settled already (a timer after a restart, or a cancel)
        if run.inline_call is None or run.inline_call[0] != kind:
            return
        _, tool, tool_input, key = run.inline_call
        ws = self.envelope.workspace_id
        result = self.inline(
            InlineCall(tool, tool_input, self.sid, step_id, attempt, key, ws)
        ) or InlineResult(ok=False, error=f"{tool} could not run in the executor; trying again")
        self._settle(step_id, attempt, kind, result, now)

    # --- approval gates (the hitl service decides; the decision comes back as an event) -----------

    # --- admission: locks, quotas and rates ---------------------------------------------------------

    # --- helpers ----------------------------------------------------------------------------------

    def _awaiting(self, run: StepRun, kind: str) -> bool:
        return run.compensation == "running" if kind == "compensate" else run.status == "running"

    def _scope(self) -> dict[str, Any]:
        return {
            "input": self.inputs,
            "steps": {s: {"output": r.output, "status": r.status} for s, r in self.steps.items()},
        }

    def _event(self, event_class: type[Event], **fields: Any) -> Event:
        event = self.trigger(event_class, **self.envelope.fields(), **fields)
        if isinstance(event, c.StepSucceeded | c.StepFailed | c.StepSkipped | c.StepCancelled):
            self._undurable.add(event.step_id)
        ws = self.envelope.workspace_id
        ended = isinstance(event, c.ExecutionSucceeded | c.ExecutionFailed | c.ExecutionCancelled)
        if ended and self.holds_claims:
            self.admission.release(self.sid, ws)  # it no longer writes anything
        step = self.steps.get(getattr(event, "step_id", ""))
        if step is not None and not step.holds:
            return event  # a pure step with no locks holds nothing to give back
        if _ends_step(event):  # whatever the step held (locks, its in-flight place) is freed
            holder = f"{self.sid}:{event.step_id}"  # type: ignore[attr-defined]
            self.admission.release(holder, ws, held_until=_held_until(step))
        elif isinstance(event, c.StepFailed) and event.kind == "run":
            holder, held = f"{self.sid}:{event.step_id}", _held_until(step)
            self.admission.release(holder, ws, locks=False, held_until=held)
        return event

    def collect(self) -> list[Event]:
        """Take the events to commit: from here on, their outcomes count as durable."""
        self._undurable.clear()
        return super().collect()

    def collect_timers(self) -> tuple[list[Timer], list[str]]:
        if self._resume_due is not None and not self.inline_due:  # nothing waits on it now
            self.timers_clear.append(_resume_id(self.sid))
            self._resume_due = None
        timers, clear = self.timers_set, self.timers_clear
        self.timers_set, self.timers_clear = [], []
        set_ids = {t.timer_id for t in timers}
        return timers, [t for t in clear if t not in set_ids]

    # --- state from events ------------------------------------------------------------------------
