"""Executions: intake, planning, the executor's events, tool results, admission."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

from baton_common.events import Event

Json = dict[str, Any]


# --- execution intake (owned by the gateway: durable, idempotent commands) ----------------------


class ExecutionRequested(Event):
    """A person or system asked for an execution: a request in words or a plan."""

    TYPE = "execution.requested"
    VERSION = 2

    request: str | None = None
    plan: Json | None = None
    inputs: Json = Field(default_factory=dict)
    idempotency_key: str | None = None
    source: str = "api"
    review_plan: bool = False  # hold the plan (given or drafted) for a person's review
    schedule_id: str | None = None  # started by a schedule's tick
    trigger_id: str | None = None  # started by a trigger's match
    trigger_chain: list[str] = Field(default_factory=list)  # the triggers that led here, in order
    plan_ref: Json | None = None  # a saved plan: {name, version?}; the planner resolves it
    simulation: Json | None = None  # a dry run, mock or replay (baton_common.simulation)


class ExecutionPauseRequested(Event):
    """Stop starting new steps of an execution; running ones finish."""

    TYPE = "execution.pause_requested"
    reason: str | None = None


class ExecutionResumeRequested(Event):
    """Start steps of a paused execution again."""

    TYPE = "execution.resume_requested"


class ExecutionCancelRequested(Event):
    """Cancel an execution: running steps are cancelled and completed ones compensated."""

    TYPE = "execution.cancel_requested"
    reason: str | None = None


class StartRequested(Event):
    """Another service (a schedule's tick, a trigger, a webhook) asks for an execution. The gateway
    records it as ``execution.requested``, once per ``idempotency_key``: the one place where
    executions begin, whoever asks."""

    TYPE = "intake.start_requested"

    idempotency_key: str = Field(min_length=1, max_length=200)
    request: str | None = None
    plan: Json | None = None
    inputs: Json = Field(default_factory=dict)
    source: str
    schedule_id: str | None = None
    trigger_id: str | None = None
    trigger_chain: list[str] = Field(default_factory=list)
    plan_ref: Json | None = None  # a saved plan: {name, version?}


class CancelRequested(Event):
    """Another service (a schedule's ``cancel_previous`` overlap policy) asks to cancel an
    execution it started. The gateway records it as ``execution.cancel_requested``, once."""

    TYPE = "intake.cancel_requested"

    execution_id: UUID
    reason: str | None = None


# --- planning (owned by the planner) --------------------------------------------------------------


class PlanProposed(Event):
    """A validated plan for an execution, from the planner or given directly."""

    TYPE = "plan.proposed"

    execution_id: UUID
    plan: Json
    planner: str
    request: str | None = None
    inputs: Json = Field(default_factory=dict)
    review_plan: bool = False
    plan_ref: Json | None = None  # from a saved plan: {name, version, chosen_by}
    simulation: Json | None = None  # carried from the request
    # What a model's planning spent: {model, attempts, input_tokens, output_tokens, estimated}
    usage: Json | None = None


class PlanningFailed(Event):
    """No valid plan could be made for an execution."""

    TYPE = "plan.failed"

    execution_id: UUID
    reason: str
    planner: str


class PlanQuestionAsked(Event):
    """The planner could not plan the request with confidence and asks the person instead of
    failing: what it understood, what is missing, and choices where it has some. The hitl
    service opens a gate of kind ``question`` (``approval_id``); its answer plans again."""

    TYPE = "plan.question_asked"

    execution_id: UUID
    approval_id: UUID
    round: int = Field(1, ge=1)  # the how-many-th question for this execution
    question: str
    understood: list[str] = Field(default_factory=list)
    not_understood: list[str] = Field(default_factory=list)
    unclear: list[str] = Field(default_factory=list)  # the tasks' words that fit no tool
    suggestion: str | None = None
    choices: list[Json] = Field(default_factory=list)  # e.g. the closest tools: {name, description}
    deadline: float | None = None  # seconds to answer; none: it waits until answered
    planner: str
    # The request as it was asked (the answer completes it), carried for the next round.
    request: str | None = None
    inputs: Json = Field(default_factory=dict)
    answers: list[str] = Field(default_factory=list)  # earlier rounds' answers
    wording: str | None = None  # the words refused this round (the request, or as answers made it)
    review_plan: bool = False
    simulation: Json | None = None


# --- execution (owned by the executor) ------------------------------------------------------------


class ExecutionStarted(Event):
    """The executor took a plan and began running it."""

    TYPE = "execution.started"

    plan: Json
    inputs: Json = Field(default_factory=dict)
    request: str | None = None
    simulation: Json | None = None  # set: nothing this execution does has a side effect


StepKind = Literal["run", "compensate"]


class StepEvent(Event):
    """An event about one step of the execution (the aggregate)."""

    step_id: str


class AttemptEvent(StepEvent):
    """An event about one attempt of a step: which attempt, and whether it runs the step or
    undoes it (``compensate``)."""

    attempt: int
    kind: StepKind = "run"

    def attempt_of(self) -> dict[str, Any]:
        """The fields naming this attempt, for an event about it (its outcome, its log)."""
        return self.model_dump(include={"aggregate_id", "step_id", "attempt", "kind"})

    @property
    def attempt_key(self) -> str:
        """``execution:step:attempt:kind``, one attempt's name, to derive ids from."""
        return f"{self.aggregate_id}:{self.step_id}:{self.attempt}:{self.kind}"


class StepDispatched(AttemptEvent):
    """One attempt of a step was handed to the tool workers: the task itself."""

    TYPE = "execution.step_dispatched"

    tool: str
    input: Json
    idempotency_key: str
    timeout_s: float = Field(gt=0)
    variant: int = 0
    simulated: Json | None = None  # set: what the worker does instead of the real call
    # Run by the executor itself (a pure tool), its result in the same commit: no worker takes it.
    inline: bool = False
    # The plan's agents (the names its agent.* steps use): a tool's ``ctx.agents`` refuses a
    # message no step could ever receive. None: a task from before this field (not checked).
    agents: list[str] | None = None

    def subject(self, root: str = "baton") -> str:
        return super().subject(root) + subject_suffix({"type": self.TYPE, "inline": self.inline})


def subject_suffix(head: Mapping[str, Any]) -> str:
    """What follows ``<root>.<workspace>.<type>`` in the subject of an event (its stored JSON
    will do): ``.inline`` for a step the executor runs itself. The consumers that take tasks
    (workers, the calendar service) filter on ``*.execution.step_dispatched`` and never receive
    it; ``*.execution.>`` still does."""
    inline = head.get("type") == StepDispatched.TYPE and head.get("inline") is True
    return ".inline" if inline else ""


# How ``Event.to_json`` ends a ``StepDispatched``: its last two fields, ``inline`` and ``agents``
# (a list of JSON strings). A quote in a JSON string is escaped (\"), so the last raw
# ``,"inline":`` is the event's own; anything else laid out differently takes a full parse.
_DISPATCH_TAIL = re.compile(
    rb',"inline":(true|false),"agents":(?:null|\[(?:"(?:[^"\\]|\\.)*"(?:,"(?:[^"\\]|\\.)*")*)?\])\}'
)


def inline_of(state: bytes) -> bool | None:
    """The ``inline`` field of a stored ``StepDispatched``, read off its last bytes; None when it
    does not end as ``Event.to_json`` writes it. The relay needs only this of the payload for the
    subject (``subject_suffix``), and a full parse of every task was 2% of the executor's
    samples at saturation through workers."""
    found = _DISPATCH_TAIL.fullmatch(state, max(state.rfind(b',"inline":'), 0))
    return None if found is None else found[1] == b"true"


class StepCall(BaseModel):
    """The call of a pure step the executor ran itself: what its ``StepDispatched`` would say."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool: str
    input: Json
    idempotency_key: str
    timeout_s: float = Field(gt=0)
    variant: int = 0
    simulated: Json | None = None


class StepSucceeded(AttemptEvent):
    """An attempt of a step finished with an output."""

    TYPE = "execution.step_succeeded"

    output: Any = None
    duration_ms: float = 0.0
    # Taken from the smart cache (no tool ran): the step whose result it reuses.
    cached_from: str | None = None
    # A pure step the executor ran and settled in one go records its call here, and no
    # ``step_dispatched`` comes before it: one event per step, as Temporal records a local
    # activity in one marker. ``dispatch_of`` gives the dispatch it stands for.
    call: StepCall | None = None


# The envelope a pure step's dispatch shares with its one event: all but its type and its id.
_SHARED_ENVELOPE = tuple(
    k for k in Event.model_fields if k not in {"type", "schema_version", "event_id"}
)


def dispatch_of(event: Event) -> StepDispatched | None:
    """The dispatch a pure step's one event stands for (None for every other event): for the
    folds that open an attempt on ``step_dispatched`` (views, tracing, recordings, metrics)."""
    if not isinstance(event, StepSucceeded) or event.call is None:
        return None
    return StepDispatched.model_construct(
        type=StepDispatched.TYPE,
        schema_version=StepDispatched.VERSION,
        event_id=uuid5(event.event_id, "dispatch"),
        **{k: event.__dict__[k] for k in _SHARED_ENVELOPE},
        step_id=event.step_id,
        attempt=event.attempt,
        kind=event.kind,
        inline=True,
        **dict(event.call),
    )


def call_of(event: Event) -> StepDispatched | StepCall | None:
    """What an attempt calls (tool, input, key, variant), from the event that opens it: a task's
    dispatch, or a pure step's one event. None for every other event."""
    if isinstance(event, StepDispatched):
        return event
    return event.call if isinstance(event, StepSucceeded) else None


def unfolded(events: Iterable[Event]) -> Iterator[Event]:
    """The events with the dispatch each pure step's one event stands for put before it."""
    for event in events:
        if (dispatch := dispatch_of(event)) is not None:
            yield dispatch
        yield event


class StepFailed(AttemptEvent):
    """An attempt of a step failed; ``retry_at`` says when the next attempt starts, if any."""

    TYPE = "execution.step_failed"

    error: str
    retry_at: datetime | None = None
    next_variant: int | None = None
    final: bool = False


class StepSkipped(StepEvent):
    """A step did not run: its condition was false or a dependency did not succeed."""

    TYPE = "execution.step_skipped"

    reason: str


class StepCancelled(StepEvent):
    """A running or waiting step was cancelled with its execution; a late result is ignored."""

    TYPE = "execution.step_cancelled"

    reason: str
    # The gate the step waited at, when it is not the step's own (a tool's question): closed too.
    approval_id: UUID | None = None


class ExecutionCancelling(Event):
    """Cancel accepted: nothing new starts, running steps are cancelled, compensation follows."""

    TYPE = "execution.cancelling"
    reason: str | None = None


class ExecutionPaused(Event):
    """No new step starts until resumed."""

    TYPE = "execution.paused"
    reason: str | None = None


class ExecutionResumed(Event):
    """A paused execution starts steps again."""

    TYPE = "execution.resumed"


class CompensationStarted(Event):
    """Completed steps are undone in reverse order of completion (saga rollback)."""

    TYPE = "execution.compensation_started"
    reason: str
    steps: list[str]


class ExecutionSucceeded(Event):
    """Every step succeeded or was skipped."""

    TYPE = "execution.succeeded"
    outputs: Json = Field(default_factory=dict)


class ExecutionFailed(Event):
    """The execution could not finish; ``error`` says why."""

    TYPE = "execution.failed"
    error: str
    failed_step: str | None = None


class ExecutionCancelled(Event):
    """The execution was cancelled on request."""

    TYPE = "execution.cancelled"
    reason: str | None = None


# --- tool workers (no store of their own: the executor records the outcome) ----------------------


class ToolAsk(BaseModel):
    """A tool stopped to ask a person before it goes on (``calendar.create_event`` with
    ``conflict: ask`` found conflicts): the executor holds the step at a gate that shows
    ``message`` and ``context``; approved, the step runs again with ``input`` (or the approvers'
    edit of it); rejected, it fails for good."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str
    message: str
    context: Json = Field(default_factory=dict)
    input: Json


class TaskFinished(AttemptEvent):
    """A tool worker finished one attempt of a step, with an output or an error."""

    TYPE = "task.finished"

    ok: bool
    output: Any = None
    error: str | None = None
    retryable: bool = True
    duration_ms: float = 0.0
    worker: str = ""
    # An upstream said when to try again (HTTP 429/503 ``Retry-After``): the retry waits that long.
    retry_after_s: float | None = Field(None, ge=0)
    # Not ok, and the tool asks a person instead of failing (an older executor fails the step).
    ask: ToolAsk | None = None


# --- admission: resource locks, rate limits and quotas (owned by the executor) ---------------------


WaitingFor = Literal["locks", "rate", "quota"]


class StepWaiting(Event):
    """A step is ready but not admitted yet: what it waits for, who holds it, and until when it
    tries again at the latest (a release wakes it sooner)."""

    TYPE = "execution.step_waiting"

    step_id: str
    waiting_for: WaitingFor
    reason: str
    locks: list[str] = Field(default_factory=list)
    holders: list[str] = Field(default_factory=list)  # "<execution>:<step>" of each holder
    until: datetime | None = None
    ticket: int | None = None  # the step's place in the FIFO queue of its locks


class ExecutionConflictDetected(Event):
    """This running execution and others write the same resources (a declared lock or the same
    file or URL of a write-class tool). Recorded on each of them."""

    TYPE = "execution.conflict_detected"

    resources: list[str]
    with_executions: list[UUID]
