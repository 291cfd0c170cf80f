"""The execution view: a pure fold of an execution's events into what people look at.

The projector stores it, ``baton replay --at N`` folds the first N events with it, and a rebuild
folds the whole history again: one function, so the three cannot disagree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from baton_common import contracts as c
from baton_common.agents_view import AGENT_VIEW_HANDLERS
from baton_common.approvals import PLAN_GATE, QUESTION_GATE
from baton_common.events import Event
from baton_common.sealing import holds_sealed, redact

View = dict[str, Any]
TERMINAL = ("succeeded", "failed", "cancelled")


def execution_id_of(event: Event) -> UUID | None:
    """The execution an event belongs to, or None for events that are not about one."""
    # From the fields (``__dict__``): a missing attribute costs pydantic an exception.
    if event.type.startswith(("execution.", "plan.")):
        return event.__dict__.get("execution_id") or event.aggregate_id
    if event.type.startswith("approval."):  # a gate's events show in its execution's history
        return event.__dict__.get("execution_id")
    if event.type.startswith("context."):  # a workspace key a step of it wrote (not the API)
        return event.__dict__.get("execution_id")
    if event.type == c.EventParked.TYPE:  # an event of it that the bus refused
        return event.correlation_id
    return None


def new_view(execution_id: UUID, event: Event) -> View:
    at = event.occurred_at.isoformat()
    return {
        "id": str(execution_id),
        "workspace_id": event.workspace_id,
        "status": "requested",
        "request": None,
        "inputs": {},
        "idempotency_key": None,
        "source": None,
        "plan": None,
        "planner": None,
        "error": None,
        "outputs": None,
        "paused": False,
        "created_at": at,
        "updated_at": at,
        "started_at": None,
        "finished_at": None,
        "events": 0,
        "steps": {},
        "conflicts": [],
    }


def fold(events: Iterable[Event], view: View | None = None) -> View | None:
    view = copy.deepcopy(view)
    for event in events:
        view = apply(view, event, in_place=True)
    return view


def apply(view: View | None, event: Event, *, in_place: bool = False, plain: bool = False) -> View:
    """The view after ``event``: a new dict, or the same one changed when ``in_place``.
    ``plain``: the caller knows ``event`` holds no sealed value (its JSON has no ``PREFIX``),
    so its fields are not looked through one by one."""
    execution_id = execution_id_of(event)
    assert execution_id is not None, event.type
    if view is None:
        view = new_view(execution_id, event)
    elif not in_place:
        view = copy.deepcopy(view)
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(view, event if plain else _shown(event))
    view["events"] += 1
    view["updated_at"] = event.occurred_at.isoformat()
    return view


# Fields that may carry a sealed secret tool input (secretinputs) into the view.
_MAY_HOLD_SECRETS = ("plan", "inputs", "input", "call", "output", "error")


def _shown(event: Event) -> Event:
    """``event`` as people may see it: a sealed value (a secret tool input) as ``***``."""
    fields = event.__dict__
    found = {k: fields[k] for k in _MAY_HOLD_SECRETS if _holds_sealed(fields.get(k))}
    if not found:
        return event
    return event.model_copy(update={k: _redact_field(v) for k, v in found.items()})


def _holds_sealed(value: Any) -> bool:
    if isinstance(value, BaseModel):
        value = value.__dict__.get("input")
    return holds_sealed(value)


def _redact_field(value: Any) -> Any:
    if isinstance(value, BaseModel):  # a pure step's call: its input
        return value.model_copy(update={"input": redact(value.__dict__.get("input"))})
    return redact(value)


def _requested(v: View, e: c.ExecutionRequested) -> None:
    v.update(request=e.request, inputs=e.inputs, idempotency_key=e.idempotency_key, source=e.source)
    if e.schedule_id or e.trigger_id:
        v.update(schedule_id=e.schedule_id, trigger_id=e.trigger_id, trigger_chain=e.trigger_chain)
    if e.plan is not None:
        v.update(plan=e.plan, planner="direct")
    if e.plan_ref is not None:  # a saved plan by name: the exact version comes with the plan
        v["plan_ref"] = e.plan_ref
    # The request comes from the gateway, the rest from the executor: the stream does not order
    # one producer's events against the other's, and the executor may publish its start (and
    # the calls it listed) before the gateway's relay publishes the request.
    if e.simulation and "simulation" not in v:
        v["simulation"] = simulation_view(e.simulation)


def _planned(v: View, e: c.PlanProposed) -> None:
    v.update(plan=e.plan, planner=e.planner)
    if e.plan_ref is not None:  # the saved plan's name and the exact version that runs
        v["plan_ref"] = e.plan_ref
    if v["status"] in ("requested", "waiting"):
        v["status"] = "planned"
    for step in e.plan.get("steps", []):
        v["steps"].setdefault(step["id"], _new_step(step))


def _question_asked(v: View, e: c.PlanQuestionAsked) -> None:
    """The planner asks the person instead of failing: the execution waits for the answer
    (unless it ended meanwhile: a cancel may be folded before the question)."""
    if v["status"] not in TERMINAL:
        v["status"] = "waiting"
    v["question"] = {
        "id": str(e.approval_id),
        "status": "pending",
        "round": e.round,
        "question": e.question,
        "understood": e.understood,
        "not_understood": e.not_understood,
        "suggestion": e.suggestion,
        "choices": e.choices,
        "answers": e.answers,
        "deadline_at": None,
    }


def _plan_failed(v: View, e: c.PlanningFailed) -> None:
    v.update(status="failed", error=f"planning failed: {e.reason}", planner=e.planner)
    v["finished_at"] = e.occurred_at.isoformat()


def _started(v: View, e: c.ExecutionStarted) -> None:
    v.update(status="running", plan=e.plan, started_at=e.occurred_at.isoformat())
    if e.simulation and "simulation" not in v:
        v["simulation"] = simulation_view(e.simulation)
    for step in e.plan.get("steps", []):
        v["steps"].setdefault(step["id"], _new_step(step))


def _new_step(step: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": step["id"],
        "tool": step["tool"],
        "status": "pending",
        "attempts": 0,
        "depends_on": sorted(step.get("depends_on", [])),
        "output": None,
        "error": None,
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
        "variant": 0,
        "next_retry_at": None,
        "compensation": None,
        "waiting": None,
        "approval": None,
    }


def _dispatched(v: View, e: c.StepDispatched) -> None:
    _attempt_opened(v, e, e)


def _attempt_opened(
    v: View, e: c.StepDispatched | c.StepSucceeded, call: c.StepDispatched | c.StepCall
) -> None:
    """An attempt begins: a task's dispatch, or a pure step's one event (``call``)."""
    if "simulation" in v:  # a simulation lists every call, real (a read) or not
        v["simulation"]["calls"].append(simulated_call(e.step_id, e.attempt, e.kind, call))
    if (s := _run_of(v, e, compensation="running")) is None:
        return
    s.update(
        status="running",
        attempts=e.attempt,
        tool=call.tool,
        variant=call.variant,
        next_retry_at=None,
        waiting=None,
    )
    s["started_at"] = s["started_at"] or e.occurred_at.isoformat()


def _succeeded(v: View, e: c.StepSucceeded) -> None:
    if e.call is not None:  # a pure step's one event: its attempt begins here too
        _attempt_opened(v, e, e.call)
    if (s := _run_of(v, e, compensation="compensated")) is None:
        return
    s.update(
        status="succeeded",
        output=e.output,
        error=None,
        duration_ms=e.duration_ms,
        finished_at=e.occurred_at.isoformat(),
        attempts=max(s["attempts"], e.attempt),
    )
    s["started_at"] = s["started_at"] or e.occurred_at.isoformat()  # done at dispatch: inline
    if e.cached_from:
        s["cached_from"] = e.cached_from


def _failed(v: View, e: c.StepFailed) -> None:
    if (s := _run_of(v, e, compensation="failed", error=e.error)) is None:
        return
    s["error"] = e.error
    if e.final:
        s.update(status="failed", finished_at=e.occurred_at.isoformat(), waiting=None)
    elif e.retry_at is not None:
        s.update(status="retrying", next_retry_at=e.retry_at.isoformat())
    elif e.next_variant is not None:
        s["status"] = "pending"  # ready with its next alternative: it runs when it can


def _run_of(v: View, e: c.AttemptEvent, **compensation: Any) -> dict[str, Any] | None:
    """The step of ``e`` when ``e`` is about running it; None when it is about undoing it,
    once ``compensation`` (the undoing's state, an error) is set on the step."""
    s: dict[str, Any] = v["steps"][e.step_id]
    if e.kind != "compensate":
        return s
    s.update(compensation)
    return None


def _waiting(v: View, e: c.StepWaiting) -> None:
    """Ready but not admitted: what it waits for (locks, a rate, a quota) and who holds it."""
    s = v["steps"][e.step_id]
    s.update(
        status="waiting",
        waiting={
            "for": e.waiting_for,
            "reason": e.reason,
            "locks": list(e.locks),
            "holders": list(e.holders),
            "until": e.until.isoformat() if e.until else None,
            "since": (s.get("waiting") or {}).get("since") or e.occurred_at.isoformat(),
        },
    )


def _conflict(v: View, e: c.ExecutionConflictDetected) -> None:
    v.setdefault("conflicts", []).append(
        {
            "resources": list(e.resources),
            "with_executions": [str(x) for x in e.with_executions],
            "at": e.occurred_at.isoformat(),
        }
    )


def _skipped(v: View, e: c.StepSkipped) -> None:
    v["steps"][e.step_id].update(status="skipped", error=e.reason, waiting=None)


def _cancelled_step(v: View, e: c.StepCancelled) -> None:
    if e.step_id == PLAN_GATE:
        if v.get("plan_review"):
            v["plan_review"]["status"] = "cancelled"
        return
    v["steps"][e.step_id].update(
        status="cancelled", finished_at=e.occurred_at.isoformat(), waiting=None
    )


def _status(status: str) -> Callable[[View, Event], None]:
    def set_status(v: View, e: Event) -> None:
        v["status"] = status
        if status in TERMINAL:
            v["finished_at"] = e.occurred_at.isoformat()
        if isinstance(e, c.ExecutionSucceeded):
            v["outputs"] = e.outputs
        if isinstance(e, c.ExecutionFailed | c.ExecutionCancelled):
            v["error"] = getattr(e, "error", None) or getattr(e, "reason", None)

    return set_status


def _parked(v: View, e: c.EventParked) -> None:
    """One of its events never reached the bus (a relay parked it): it ends failed, also when
    the event parked was its own ending, which this view then never sees."""
    if v["status"] not in TERMINAL:
        v.update(status="failed", finished_at=e.occurred_at.isoformat())
    if v["status"] == "failed":
        v["error"] = v.get("error") or f"an event of this execution was parked: {e.reason}"


def _paused(paused: bool) -> Callable[[View, Event], None]:
    def set_paused(v: View, _e: Event) -> None:
        v["paused"] = paused
        if v["status"] in ("running", "paused"):
            v["status"] = "paused" if paused else "running"

    return set_paused


def _approval_requested(v: View, e: c.StepApprovalRequested) -> None:
    record = {
        "id": str(e.approval_id),
        "status": "pending",
        "reason": e.reason,
        "message": e.message,
        "input": e.input,
        "policy": e.policy,
    }
    if e.step_id == PLAN_GATE:
        v["plan_review"] = record
        return
    v["steps"][e.step_id].update(
        status="waiting_approval", approval={**record, "context": e.context}
    )


def _gate(change: Callable[[dict[str, Any], Any], None]) -> Callable[[View, Any], None]:
    """A handler that changes the step's approval record (if the gate is known)."""

    def handle(v: View, e: Any) -> None:
        if e.step_id == QUESTION_GATE:
            record = v.get("question")
            if record is not None and record["id"] != str(e.aggregate_id):
                record = None  # an earlier round's gate
        elif e.step_id == PLAN_GATE:
            record = v.get("plan_review")
        else:
            record = (v["steps"].get(e.step_id) or {}).get("approval")
        if record is not None:
            change(record, e)

    return handle


def _opened(a: dict[str, Any], e: c.ApprovalOpened) -> None:
    a.update(deadline_at=_iso(e.deadline_at), approvers=e.approvers, min_approvals=e.min_approvals)


def _granted(a: dict[str, Any], e: c.ApprovalGranted) -> None:
    a.update(status="granted", by=e.by, edited=e.edited, decided_input=e.input, comment=e.comment)
    a["automatic"] = e.automatic


def _rejected(a: dict[str, Any], e: c.ApprovalRejected) -> None:
    a.update(status="rejected", by=e.by, reason=e.reason, automatic=e.automatic)


def _escalated(a: dict[str, Any], e: c.ApprovalEscalated) -> None:
    a.update(approvers=e.approvers, deadline_at=_iso(e.deadline_at), escalated=True)


def _answered(a: dict[str, Any], e: c.ApprovalAnswered) -> None:
    a.update(status="answered", by=e.by, answer=e.answer)
    a["answers"] = [*a.get("answers", []), e.answer]


def _gate_cancelled(a: dict[str, Any], e: c.ApprovalCancelled) -> None:
    a.update(status="cancelled", reason=e.reason)


def _plan_approved(v: View, e: c.PlanApproved) -> None:
    v.update(plan=e.plan)
    v["steps"] = {step["id"]: _new_step(step) for step in e.plan.get("steps", [])}


def _approved(v: View, e: c.StepApproved) -> None:
    v["steps"][e.step_id]["status"] = "pending"  # through the gate; it runs when it can


def _hook_failed(v: View, e: c.StepHookFailed) -> None:
    step = v["steps"].get(e.step_id)
    if step is not None:  # a plugin's hook failed around this step; the step went on
        note = {"attempt": e.attempt, "plugin": e.plugin, "hook": e.hook, "error": e.error}
        step.setdefault("hook_errors", []).append(note)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


_HANDLERS: dict[type[Event], Callable[[View, Any], None]] = {
    c.StepApprovalRequested: _approval_requested,
    c.StepApproved: _approved,
    c.PlanApproved: _plan_approved,
    c.ApprovalOpened: _gate(_opened),
    c.ApprovalGranted: _gate(_granted),
    c.ApprovalRejected: _gate(_rejected),
    c.ApprovalEscalated: _gate(_escalated),
    c.ApprovalCancelled: _gate(_gate_cancelled),
    c.ApprovalAnswered: _gate(_answered),
    c.PlanQuestionAsked: _question_asked,
    c.ExecutionRequested: _requested,
    c.PlanProposed: _planned,
    c.PlanningFailed: _plan_failed,
    c.ExecutionStarted: _started,
    c.StepDispatched: _dispatched,
    c.StepWaiting: _waiting,
    c.ExecutionConflictDetected: _conflict,
    c.StepSucceeded: _succeeded,
    c.StepFailed: _failed,
    c.StepSkipped: _skipped,
    c.StepCancelled: _cancelled_step,
    c.ExecutionPaused: _paused(True),
    c.ExecutionResumed: _paused(False),
    c.ExecutionCancelling: _status("cancelling"),
    c.CompensationStarted: _status("compensating"),
    c.ExecutionSucceeded: _status("succeeded"),
    c.ExecutionFailed: _status("failed"),
    c.ExecutionCancelled: _status("cancelled"),
    c.StepHookFailed: _hook_failed,
    c.EventParked: _parked,
    **AGENT_VIEW_HANDLERS,
}


def simulation_view(simulation: dict[str, Any]) -> dict[str, Any]:
    """A simulated execution's mark in its view; ``calls`` lists every call it made or would
    have made (a replay's recordings stay in the history, not in the view)."""
    return {
        "mode": simulation.get("mode", "dry_run"),
        "run_reads": simulation.get("run_reads", True),
        "replay_of": simulation.get("replay_of"),
        "calls": [],
    }


def simulated_call(
    step_id: str, attempt: int, kind: str, e: c.StepDispatched | c.StepCall
) -> dict[str, Any]:
    """A simulation's record of one call: how it was made (real, recorded, mocked, simulated)."""
    sim = e.simulated or {"real": True}
    how = "real" if sim.get("real") else ("recorded" if "recorded" in sim else "simulated")
    how = "mocked" if "mock" in sim else how
    call = {
        "step_id": step_id,
        "attempt": attempt,
        "kind": kind,
        "tool": e.tool,
        "input": e.input,
        "call": how,
    }
    for key in ("approval_skipped", "unrecorded"):
        if key in sim:
            call[key] = sim[key]
    return call
