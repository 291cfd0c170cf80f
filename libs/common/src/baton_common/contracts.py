"""The typed events services exchange on the bus: the one contract between them.

Names are stable strings (``<domain>.<event>``); the subject of an event is
``<root>.<workspace>.<domain>.<event>``. Past tense for facts, ``*_requested`` for commands that a
service records before another acts on them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import NAMESPACE_URL, UUID, uuid5

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


class PlanningFailed(Event):
    """No valid plan could be made for an execution."""

    TYPE = "plan.failed"

    execution_id: UUID
    reason: str
    planner: str


# --- execution (owned by the executor) ------------------------------------------------------------


class ExecutionStarted(Event):
    """The executor took a plan and began running it."""

    TYPE = "execution.started"

    plan: Json
    inputs: Json = Field(default_factory=dict)
    request: str | None = None


StepKind = Literal["run", "compensate"]


class StepDispatched(Event):
    """One attempt of a step was handed to the tool workers: the task itself."""

    TYPE = "execution.step_dispatched"

    step_id: str
    attempt: int
    kind: StepKind = "run"
    tool: str
    input: Json
    idempotency_key: str
    timeout_s: float = Field(gt=0)
    variant: int = 0


class StepSucceeded(Event):
    """An attempt of a step finished with an output."""

    TYPE = "execution.step_succeeded"

    step_id: str
    attempt: int
    kind: StepKind = "run"
    output: Any = None
    duration_ms: float = 0.0


class StepFailed(Event):
    """An attempt of a step failed; ``retry_at`` says when the next attempt starts, if any."""

    TYPE = "execution.step_failed"

    step_id: str
    attempt: int
    kind: StepKind = "run"
    error: str
    retry_at: datetime | None = None
    next_variant: int | None = None
    final: bool = False


class StepSkipped(Event):
    """A step did not run: its condition was false or a dependency did not succeed."""

    TYPE = "execution.step_skipped"

    step_id: str
    reason: str


class StepCancelled(Event):
    """A running or waiting step was cancelled with its execution; a late result is ignored."""

    TYPE = "execution.step_cancelled"

    step_id: str
    reason: str


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


class TaskFinished(Event):
    """A tool worker finished one attempt of a step, with an output or an error."""

    TYPE = "task.finished"

    step_id: str
    attempt: int
    kind: StepKind = "run"
    ok: bool
    output: Any = None
    error: str | None = None
    retryable: bool = True
    duration_ms: float = 0.0
    worker: str = ""
    # An upstream said when to try again (HTTP 429/503 ``Retry-After``): the retry waits that long.
    retry_after_s: float | None = Field(None, ge=0)


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


# --- workspaces, members and API keys (owned by the gateway) ---------------------------------------


class WorkspaceCreated(Event):
    """A workspace: a team's own executions, keys, policy and quotas."""

    TYPE = "workspace.created"
    name: str


class MemberSet(Event):
    """A person was given a role in a workspace (or a new one)."""

    TYPE = "workspace.member_set"
    user: str
    role: str


class MemberRemoved(Event):
    """A person no longer belongs to a workspace."""

    TYPE = "workspace.member_removed"
    user: str


class ApiKeyCreated(Event):
    """An API key of a workspace; only its salted scrypt hash is kept."""

    TYPE = "workspace.key_created"
    name: str
    role: str
    salt: str
    hash: str
    expires_at: datetime | None = None


class ApiKeyRevoked(Event):
    """An API key stops working at once."""

    TYPE = "workspace.key_revoked"
    reason: str | None = None


class WorkspacePolicySet(Event):
    """A workspace's tool allow/deny lists and quotas (a ``WorkspacePolicy``), replaced whole."""

    TYPE = "workspace.policy_set"
    policy: Json


# --- webhooks (owned by the webhook service) -------------------------------------------------------
# Secrets travel in the endpoint and subscription events: the webhook service must hold them in
# clear to compute HMACs. Only the webhook service consumes ``webhook.*`` events.


class WebhookEndpointCreated(Event):
    """An inbound endpoint: ``POST /hooks/<aggregate id>``, verified by ``scheme`` with one of
    ``secrets``, starts ``action`` (a plan or a request in words) with inputs mapped from it."""

    TYPE = "webhook.endpoint_created"

    name: str
    scheme: Literal["standard", "github", "stripe", "none"] = "standard"
    secrets: list[str] = Field(default_factory=list)
    action: Json
    tolerance_s: float = 300.0
    max_body_bytes: int = 1024 * 1024
    content_types: list[str] = Field(default_factory=lambda: ["application/json"])
    rate_per_minute: int | None = None


class WebhookEndpointSecretRotated(Event):
    """A new secret signs from now on; the previous one stays valid until ``previous_until``."""

    TYPE = "webhook.endpoint_secret_rotated"

    secret: str
    previous_until: datetime


class WebhookEndpointDeleted(Event):
    """The endpoint answers 404 from now on."""

    TYPE = "webhook.endpoint_deleted"


class WebhookReceived(Event):
    """A verified inbound delivery, stored before it is acknowledged; one per (endpoint,
    delivery id), which is the durable dedupe. Triggers may match it by endpoint name."""

    TYPE = "webhook.received"

    endpoint_id: UUID
    endpoint: str
    delivery_id: str
    scheme: str
    payload: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    execution_id: UUID | None = None
    # The body was too large to travel as an event (NATS' message limit): only its inputs did.
    payload_omitted: bool = False


class WebhookSubscriptionCreated(Event):
    """An outbound subscription: events matching ``events`` (and ``plan``, if given) are posted
    to ``url``, signed per Standard Webhooks with ``secret``."""

    TYPE = "webhook.subscription_created"

    url: str
    events: list[str]
    plan: str | None = None
    secret: str
    retry_schedule: list[float] = Field(default_factory=list)
    disable_after: int = 5  # deliveries dead-lettered in a row


class WebhookSubscriptionFailing(Event):
    """A delivery of this subscription was dead-lettered; ``failures`` in a row so far."""

    TYPE = "webhook.subscription_failing"

    delivery_id: UUID
    failures: int


class WebhookSubscriptionRecovered(Event):
    """A delivery succeeded after failures: the count starts again."""

    TYPE = "webhook.subscription_recovered"


class WebhookSubscriptionDisabled(Event):
    """Nothing more is sent to this subscription until it is enabled again."""

    TYPE = "webhook.subscription_disabled"

    reason: str


class WebhookSubscriptionEnabled(Event):
    """A disabled subscription is sent events again."""

    TYPE = "webhook.subscription_enabled"


class WebhookSubscriptionDeleted(Event):
    """The subscription is gone: nothing more is sent or retried."""

    TYPE = "webhook.subscription_deleted"


class WebhookDeliveryScheduled(Event):
    """One event for one subscription: sent with the same ``webhook-id`` on every attempt."""

    TYPE = "webhook.delivery_scheduled"

    subscription_id: UUID
    url: str
    event_type: str
    message_id: str
    payload: Json
    source_event_id: UUID | None = None


class WebhookDeliveryAttempted(Event):
    """One attempt: its answer (or error), how long it took, and when the next one is due."""

    TYPE = "webhook.delivery_attempted"

    attempt: int
    ok: bool
    status_code: int | None = None
    latency_ms: float = 0.0
    response: str = ""
    error: str | None = None
    next_at: datetime | None = None


class WebhookDeliverySucceeded(Event):
    """The subscriber answered 2xx."""

    TYPE = "webhook.delivery_succeeded"

    attempts: int


class WebhookDeliveryDeadLettered(Event):
    """Every attempt failed: the delivery waits in the dead letter for a manual redeliver."""

    TYPE = "webhook.delivery_dead_lettered"

    attempts: int
    reason: str


class WebhookRedeliveryRequested(Event):
    """A person asked to send it again: a new round of attempts, with the same ``webhook-id``."""

    TYPE = "webhook.redelivery_requested"


def webhook_rpc_subject(root: str) -> str:
    """Where the webhook service answers the gateway (NATS request/reply, queue group webhook)."""
    return f"{root}_rpc.webhook.call"


class WebhookCall(BaseModel):
    """One operation of the webhooks API (``endpoint.create``, ``delivery.list``, …), forwarded
    by the gateway for the caller's workspace."""

    model_config = ConfigDict(extra="forbid")
    op: str
    workspace_id: str
    actor: str | None = None
    body: Json = Field(default_factory=dict)


class WebhookReply(BaseModel):
    """The webhook service's answer: an HTTP status, a reason when it failed, and a JSON body."""

    status: int
    detail: str = ""
    body: Any = None


# --- calendars (owned by the calendar service) ----------------------------------------------------
# A Calendar is built in (its events kept here, as ICS text) or a CalDAV collection (the server
# holds the events; these events record what Baton did to it). A CalendarEvent's aggregate id is
# derived from its UID, and a tool's UID from the step's idempotency key: one event per step.


class CalendarCreated(Event):
    """A calendar: ``builtin`` (kept in Baton's store) or ``caldav`` (connected by URL). The
    CalDAV password travels in clear, like webhook secrets: only the calendar service reads it."""

    TYPE = "calendar.created"

    name: str
    backend: Literal["builtin", "caldav"] = "builtin"
    url: str | None = None
    username: str | None = None
    password: str | None = None
    owner: str | None = None  # the attendee (e-mail) whose calendar this is
    timezone: str = "UTC"
    working_hours: Json | None = None
    default: bool = False


class CalendarDeleted(Event):
    """The calendar is forgotten (a CalDAV collection itself is left as it is)."""

    TYPE = "calendar.deleted"


class CalendarEventCreated(Event):
    """An event written to a calendar, as ICS text (one VCALENDAR with its VEVENTs)."""

    TYPE = "calendar.event_created"

    calendar_id: UUID
    uid: str
    ics: str
    idempotency_key: str | None = None


class CalendarEventUpdated(Event):
    """The event's new ICS text."""

    TYPE = "calendar.event_updated"

    calendar_id: UUID
    uid: str
    ics: str


class CalendarEventCancelled(Event):
    """The event is gone from its calendar (a saga's compensation, or a person's cancel)."""

    TYPE = "calendar.event_cancelled"

    calendar_id: UUID
    uid: str
    reason: str | None = None


def calendar_rpc_subject(root: str) -> str:
    """Where the calendar service answers the gateway (NATS request/reply, queue group calendar)."""
    return f"{root}_rpc.calendar.call"


class CalendarCall(BaseModel):
    """One operation of the calendars API (``calendar.connect``, ``slots.find``, …), forwarded by
    the gateway for the caller's workspace."""

    model_config = ConfigDict(extra="forbid")
    op: str
    workspace_id: str
    actor: str | None = None
    body: Json = Field(default_factory=dict)


class CalendarReply(BaseModel):
    """The calendar service's answer: an HTTP status, a reason when it failed, and a body."""

    status: int
    detail: str = ""
    body: Any = None


# --- approval gates -------------------------------------------------------------------------------


class StepApprovalRequested(Event):
    """The executor holds a step at its gate (``requires_approval`` or a critical tool) until a
    person decides; ``approval_id`` names the gate. Recorded on the execution."""

    TYPE = "execution.approval_requested"

    step_id: str
    approval_id: UUID
    tool: str
    input: Json
    policy: Json = Field(default_factory=dict)
    message: str | None = None
    reason: str = "requires_approval"


class StepApproved(Event):
    """The executor took a gate's approval: the step runs with ``input`` (what was decided)."""

    TYPE = "execution.step_approved"

    step_id: str
    approval_id: UUID
    input: Json
    edited: bool = False
    by: list[str] = Field(default_factory=list)


class PlanApproved(Event):
    """The plan passed its review: the execution runs ``plan`` (edited, or as it was)."""

    TYPE = "execution.plan_approved"

    approval_id: UUID
    plan: Json
    edited: bool = False
    by: list[str] = Field(default_factory=list)


class ApprovalOpened(Event):
    """The hitl service opened a gate: who may decide, how many must, and by when."""

    TYPE = "approval.opened"

    execution_id: UUID
    step_id: str
    tool: str
    input: Json
    policy: Json = Field(default_factory=dict)
    message: str | None = None
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = 1
    deadline_at: datetime | None = None


class ApprovalVoted(Event):
    """One person approved (or approved with an edited input); more may be needed."""

    TYPE = "approval.voted"

    execution_id: UUID
    step_id: str
    user: str
    decision: Literal["approve", "edit"]
    comment: str | None = None
    input: Json | None = None


class ApprovalEscalated(Event):
    """No decision by the deadline: other approvers are asked, with a new deadline."""

    TYPE = "approval.escalated"

    execution_id: UUID
    step_id: str
    approvers: list[str]
    deadline_at: datetime | None = None


class ApprovalExpired(Event):
    """No decision by the deadline; ``outcome`` is what the policy said to do."""

    TYPE = "approval.expired"

    execution_id: UUID
    step_id: str
    outcome: Literal["reject", "approve", "escalate"]


class ApprovalGranted(Event):
    """The gate opens: the step runs with ``input`` (edited, or as it was asked)."""

    TYPE = "approval.granted"

    execution_id: UUID
    step_id: str
    input: Json
    original_input: Json
    edited: bool = False
    by: list[str] = Field(default_factory=list)
    comment: str | None = None
    automatic: bool = False


class ApprovalRejected(Event):
    """The gate stays shut: the step fails for good (or tries its alternatives, if allowed)."""

    TYPE = "approval.rejected"

    execution_id: UUID
    step_id: str
    reason: str
    by: list[str] = Field(default_factory=list)
    automatic: bool = False


class ApprovalCancelled(Event):
    """The execution ended (cancelled, failed) while its gate was open: the gate closes."""

    TYPE = "approval.cancelled"

    execution_id: UUID
    step_id: str
    reason: str


# --- schedules and triggers (owned by the scheduler) ----------------------------------------------
# A schedule's and a trigger's life (created, updated, paused, unpaused, deleted) and what each
# tick or matching event did. Starts go to the gateway as ``intake.start_requested`` on a run
# record whose id is the execution's, so a tick or an event starts at most one execution.


class ScheduleCreated(Event):
    """A schedule: when (cron, interval or one time, in a zone), what to start, and its policies."""

    TYPE = "schedule.created"
    name: str
    definition: Json
    anchor: datetime  # ticks are counted from here: the first one is after it


class ScheduleUpdated(Event):
    """A new definition; ticks go on from ``anchor`` (now): none before it are caught up."""

    TYPE = "schedule.updated"
    name: str
    definition: Json
    anchor: datetime


class SchedulePaused(Event):
    """No ticks until unpaused; ``note`` says why."""

    TYPE = "schedule.paused"
    note: str | None = None


class ScheduleUnpaused(Event):
    """Ticks again, from ``resume_from``: the ticks of the pause are not caught up."""

    TYPE = "schedule.unpaused"
    note: str | None = None
    resume_from: datetime


class ScheduleDeleted(Event):
    """Gone: no more ticks, not listed."""

    TYPE = "schedule.deleted"


class ScheduleFired(Event):
    """A tick (or trigger-now, a backfill, a buffered tick) asked for an execution."""

    TYPE = "schedule.fired"
    scheduled_for: datetime
    fired_at: datetime
    execution_id: UUID
    idempotency_key: str
    reason: Literal["tick", "catchup", "manual", "backfill", "buffered"] = "tick"


class ScheduleTickSkipped(Event):
    """A due tick started nothing: its overlap policy said so (``reason``)."""

    TYPE = "schedule.tick_skipped"
    scheduled_for: datetime
    reason: str


class ScheduleTickBuffered(Event):
    """``buffer_one``: the tick waits for the running execution to end."""

    TYPE = "schedule.tick_buffered"
    scheduled_for: datetime


class ScheduleTicksMissed(Event):
    """Ticks that were not run (downtime past the catch-up window, or the catch-up policy)."""

    TYPE = "schedule.ticks_missed"
    count: int
    first: datetime
    last: datetime
    reason: str


class ScheduleRunEnded(Event):
    """An execution the schedule started ended: it no longer counts for overlap."""

    TYPE = "schedule.run_ended"
    execution_id: UUID
    status: str


class ScheduleCompleted(Event):
    """No tick will come again (one time done, end date passed, max runs reached)."""

    TYPE = "schedule.completed"
    reason: str


class TriggerCreated(Event):
    """A trigger: an event filter and what to start when an event matches."""

    TYPE = "trigger.created"
    name: str
    definition: Json


class TriggerUpdated(Event):
    """A new definition for the events that come next."""

    TYPE = "trigger.updated"
    name: str
    definition: Json


class TriggerPaused(Event):
    """Matching events start nothing until unpaused."""

    TYPE = "trigger.paused"
    note: str | None = None


class TriggerUnpaused(Event):
    """Matching events start executions again."""

    TYPE = "trigger.unpaused"
    note: str | None = None


class TriggerDeleted(Event):
    """Gone: matches nothing, not listed."""

    TYPE = "trigger.deleted"


class TriggerFired(Event):
    """An event matched: an execution was asked for, carrying the chain of triggers so far."""

    TYPE = "trigger.fired"
    event_id_matched: UUID
    event_type: str
    execution_id: UUID
    idempotency_key: str
    trigger_chain: list[str] = Field(default_factory=list)
    reason: Literal["event", "manual"] = "event"


class TriggerLoopStopped(Event):
    """An event matched, but starting would loop (the trigger fired on its own output, or the
    chain is deeper than allowed): nothing was started."""

    TYPE = "trigger.loop_stopped"
    event_id_matched: UUID
    event_type: str
    trigger_chain: list[str]
    reason: str


class TriggerSkipped(Event):
    """An event matched but nothing could start (an input's reference is missing)."""

    TYPE = "trigger.skipped"
    event_id_matched: UUID
    event_type: str
    reason: str


class SchedulerCall(BaseModel):
    """A request to the scheduler over NATS request/reply (the gateway's routes send them):
    ``op`` on ``kind`` (schedule, trigger) in the caller's workspace."""

    model_config = ConfigDict(extra="forbid")
    op: str
    kind: Literal["schedule", "trigger"]
    workspace_id: str
    actor: str | None = None
    id: str | None = None
    body: Json = Field(default_factory=dict)


class SchedulerReply(BaseModel):
    """The scheduler's answer: an HTTP-like status, a reason, and a body."""

    status: int
    detail: str | None = None
    body: Json = Field(default_factory=dict)


def execution_id_for_key(workspace_id: str, idempotency_key: str) -> UUID:
    """The execution the gateway records for this key (its rule, repeated here so a service can
    know the id before the gateway has seen the request)."""
    return uuid5(NAMESPACE_URL, f"baton:{workspace_id}:{idempotency_key}")


def scheduler_subject(root: str) -> str:
    """The request/reply subject of the scheduler (queue group ``scheduler``)."""
    return f"{root}_rpc.scheduler"


# --- upcasters: one function per version step, applied on every read ------------------------------


def _register_upcasters() -> None:
    from baton_common.events import _REGISTRY

    @_REGISTRY.upcaster("execution.requested", 1)
    def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
        # v1 called the natural-language request ``prompt`` and the inputs ``params``.
        data["request"] = data.pop("prompt", None)
        data["inputs"] = data.pop("params", None) or {}
        return data


_register_upcasters()
