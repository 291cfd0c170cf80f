"""The Trigger aggregate: events in, executions out, with chains of triggers bounded."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.plans import ReferenceError_, lookup, resolve
from baton_common.sealing import redact_fields

from baton_scheduler.domain.base import Automation, dump_spec, iso
from baton_scheduler.spec import TriggerSpec

MAX_CHAIN = 5  # triggers in a row an execution may descend from


def event_context(event: Event) -> dict[str, Any]:
    """What a trigger's conditions and inputs see of an event (``${event.payload.error}``)."""
    # A secret (sealed, or plain in an old event) never reaches an execution's inputs.
    payload = redact_fields(event.model_dump(mode="json", exclude=set(Event.model_fields)))
    source = source_execution(event)
    return {
        "type": event.type,
        "id": str(event.event_id),
        "occurred_at": event.occurred_at.isoformat(),
        "workspace_id": event.workspace_id,
        "aggregate_id": str(event.aggregate_id),
        "execution_id": str(source) if source else None,
        "actor": event.actor,
        "payload": payload,
    }


def source_execution(event: Event) -> UUID | None:
    """The execution an event is about, if any (whose trigger chain it continues)."""
    if event.type.startswith("execution."):
        return event.aggregate_id
    found = getattr(event, "execution_id", None)
    return found if isinstance(found, UUID) else event.correlation_id


class Trigger(Automation):
    """Events in, executions out: a filter, an action, and a bound on chains of triggers."""

    kind = "trigger"
    SPEC = TriggerSpec
    EVENTS = {"paused": c.TriggerPaused, "unpaused": c.TriggerUnpaused, "deleted": c.TriggerDeleted}

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.spec: TriggerSpec | None = None

    def create(self, workspace_id: str, spec: TriggerSpec, actor: str | None) -> None:
        self.workspace_id = workspace_id
        self._event(c.TriggerCreated, actor=actor, name=spec.name, definition=dump_spec(spec))

    def update(self, spec: TriggerSpec, actor: str | None) -> None:
        self.check_alive()
        self._event(c.TriggerUpdated, actor=actor, name=spec.name, definition=dump_spec(spec))

    def listens_to(self, event: Event) -> bool:
        return (
            self.status == "active"
            and self.spec is not None
            and self.spec.filter.type == event.type
            and self.workspace_id == event.workspace_id
        )

    def matches(self, context: dict[str, Any]) -> bool:
        assert self.spec is not None
        f = self.spec.filter
        if f.plan is not None and _get(context, "execution.plan_name") != f.plan:
            return False
        return all(_holds(cond, context) for cond in f.where)

    def fire(self, context: dict[str, Any], chain: list[str], reason: str = "event") -> None:
        """Start the action for a matching event (``context``: ``event_context``), unless that
        would loop."""
        assert self.spec is not None
        me, event_id = str(self.id), UUID(context["id"])
        base = {"event_id_matched": event_id, "event_type": context["type"]}
        if reason == "event":
            base["causation_id"] = event_id
        if me in chain:
            why = f"trigger {self.name!r} would fire on its own output (chain: {' → '.join(chain)})"
            self._event(c.TriggerLoopStopped, **base, trigger_chain=chain, reason=why)
            return
        if len(chain) + 1 > MAX_CHAIN:
            why = f"the chain of triggers would be {len(chain) + 1} deep; at most {MAX_CHAIN}"
            self._event(c.TriggerLoopStopped, **base, trigger_chain=chain, reason=why)
            return
        scope = {"event": context, "trigger": {"id": me, "name": self.name}}
        try:
            inputs = resolve(self.spec.inputs, scope)
        except ReferenceError_ as exc:
            self._event(c.TriggerSkipped, **base, reason=f"inputs: {exc}")
            return
        key = f"trigger:{me}:{event_id}"
        execution_id = c.execution_id_for_key(self.workspace_id, key)
        fired = self._event(
            c.TriggerFired, **base, correlation_id=execution_id, execution_id=execution_id,
            idempotency_key=key, trigger_chain=[*chain, me], reason=reason,
        )  # fmt: skip
        self._ask_start(
            execution_id, key, fired, inputs=inputs, trigger_id=me, trigger_chain=[*chain, me]
        )

    # --- state from events ------------------------------------------------------------------------

    def on_created(self, e: c.TriggerCreated) -> None:
        self.workspace_id, self.created_at = e.workspace_id, e.occurred_at
        self._define(e.name, e.definition)

    def on_updated(self, e: c.TriggerUpdated) -> None:
        self._define(e.name, e.definition)

    def on_fired(self, e: c.TriggerFired) -> None:
        self._remember(
            {
                "event_id": str(e.event_id_matched),
                "event_type": e.event_type,
                "fired_at": iso(e.occurred_at),
                "outcome": "started",
                "reason": e.reason,
                "execution_id": str(e.execution_id),
                "trigger_chain": e.trigger_chain,
            }
        )

    def on_loop_stopped(self, e: c.TriggerLoopStopped) -> None:
        self._remember(
            {
                "event_id": str(e.event_id_matched),
                "event_type": e.event_type,
                "fired_at": iso(e.occurred_at),
                "outcome": "loop_stopped",
                "reason": e.reason,
                "trigger_chain": e.trigger_chain,
            }
        )

    def on_skipped(self, e: c.TriggerSkipped) -> None:
        entry = {"event_id": str(e.event_id_matched), "event_type": e.event_type}
        self._remember(
            {**entry, "fired_at": iso(e.occurred_at), "outcome": "skipped", "reason": e.reason}
        )

    def view(self) -> dict[str, Any]:
        return {
            **super().view(),
            "counts": {
                "fired": self.counts["fired"],
                "loops_stopped": self.counts["loop_stopped"],
                "skipped": self.counts["skipped"],
            },
        }


def _get(context: dict[str, Any], path: str) -> Any:
    try:
        return lookup(context, path)
    except ReferenceError_:
        return None


def _holds(cond: Any, context: dict[str, Any]) -> bool:
    try:
        value = lookup(context, cond.clean_path)
    except ReferenceError_:
        return cond.exists is False
    if cond.exists is not None:
        return bool(cond.exists)
    if "equals" in cond.model_fields_set:
        return bool(value == cond.equals)
    return _contains(value, cond.contains)


def _contains(value: Any, part: Any) -> bool:
    if isinstance(value, str):
        return isinstance(part, str) and part in value
    if isinstance(value, list):
        return part in value
    if isinstance(value, dict) and isinstance(part, dict):
        return all(value.get(k) == v for k, v in part.items())
    return False
