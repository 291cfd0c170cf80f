"""The webhook service's aggregates: Endpoint and Receipt (inbound), Subscription and Delivery
(outbound). No I/O: commands in, events out; the ``on_*`` methods fold events into state.

A Receipt's id is fixed by (endpoint, delivery id), so its version 1 can be stored once: that
uniqueness is the durable dedupe of inbound deliveries, with no time window. A Delivery's id is
fixed by (subscription, event), so a redelivered bus message schedules nothing new.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.errors import Conflict
from baton_common.events import Event
from baton_common.store import Timer

from baton_webhook.inputs import map_inputs


def endpoint_id_for(workspace_id: str, name: str) -> UUID:
    """One endpoint per name in a workspace: creating it twice conflicts."""
    return uuid5(NAMESPACE_URL, f"baton:webhook-endpoint:{workspace_id}:{name}")


def receipt_id_for(endpoint_id: UUID, delivery_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"baton:webhook-receipt:{endpoint_id}:{delivery_id}")


def delivery_id_for(subscription_id: UUID, event_id: UUID | str) -> UUID:
    return uuid5(NAMESPACE_URL, f"baton:webhook-delivery:{subscription_id}:{event_id}")


def execution_id_for(workspace_id: str, idempotency_key: str) -> UUID:
    """The execution the gateway records for a key (its ``execution_id_for``): known at once."""
    return uuid5(NAMESPACE_URL, f"baton:{workspace_id}:{idempotency_key}")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- inbound ------------------------------------------------------------------------------------


class Endpoint(Aggregate):
    """Where a sender posts: its scheme, valid secrets, limits and the action it starts."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.created: c.WebhookEndpointCreated | None = None
        self.secrets: list[tuple[str, datetime | None]] = []  # (secret, valid until)
        self.deleted = False

    @property
    def live(self) -> bool:
        return self.created is not None and not self.deleted

    def create(self, workspace_id: str, actor: str | None, **fields: Any) -> None:
        if self.live:
            raise Conflict(f"an endpoint named {fields['name']!r} exists in this workspace")
        self.trigger(c.WebhookEndpointCreated, workspace_id=workspace_id, actor=actor, **fields)

    def rotate(self, secret: str, keep_s: float, now: datetime, actor: str | None) -> None:
        assert self.created is not None
        until = now + timedelta(seconds=keep_s)
        self.trigger(
            c.WebhookEndpointSecretRotated,
            workspace_id=self.created.workspace_id,
            actor=actor,
            secret=secret,
            previous_until=until,
        )

    def delete(self, actor: str | None) -> None:
        assert self.created is not None
        self.trigger(c.WebhookEndpointDeleted, workspace_id=self.created.workspace_id, actor=actor)

    def valid_secrets(self, now: datetime) -> list[str]:
        return [s for s, until in self.secrets if until is None or until > now]

    def on_endpoint_created(self, e: c.WebhookEndpointCreated) -> None:
        self.created, self.deleted = e, False
        self.secrets = [(s, None) for s in e.secrets]

    def on_endpoint_secret_rotated(self, e: c.WebhookEndpointSecretRotated) -> None:
        current = [(s, e.previous_until) for s, until in self.secrets if until is None]
        self.secrets = [(e.secret, None), *current]

    def on_endpoint_deleted(self, _e: c.WebhookEndpointDeleted) -> None:
        self.deleted = True

    def view(self, base_url: str) -> dict[str, Any]:
        e = self.created
        assert e is not None
        return {
            "id": str(self.id),
            "name": e.name,
            "url": f"{base_url}/hooks/{self.id}",
            "scheme": e.scheme,
            "action": e.action,
            "tolerance_s": e.tolerance_s,
            "max_body_bytes": e.max_body_bytes,
            "content_types": e.content_types,
            "rate_per_minute": e.rate_per_minute,
            "secrets": len(self.secrets),
            "created_at": _iso(e.occurred_at),
            "deleted": self.deleted,
        }


class Receipt(Aggregate):
    """One inbound delivery of one endpoint: stored once, with the start it asks for."""

    def record(
        self,
        endpoint: Endpoint,
        delivery_id: str,
        payload: Any,
        headers: dict[str, str],
        keep_payload: bool = True,
    ) -> c.StartRequested:
        e = endpoint.created
        assert e is not None
        key = f"webhook:{e.name}:{delivery_id}"[:200]
        execution_id = execution_id_for(e.workspace_id, key)
        received = self.trigger(
            c.WebhookReceived,
            workspace_id=e.workspace_id,
            endpoint_id=endpoint.id,
            endpoint=e.name,
            delivery_id=delivery_id,
            scheme=e.scheme,
            payload=payload if keep_payload else None,
            payload_omitted=not keep_payload,
            headers=headers,
            execution_id=execution_id,
        )
        action = e.action
        start = self.trigger(
            c.StartRequested,
            workspace_id=e.workspace_id,
            causation_id=received.event_id,
            correlation_id=execution_id,
            idempotency_key=key,
            request=map_inputs(action.get("request"), payload, headers),
            plan=action.get("plan"),
            plan_ref=action.get("plan_ref"),
            inputs=map_inputs(action.get("inputs") or {}, payload, headers),
            source="webhook",
            actor=f"webhook {e.name}",
        )
        return start  # type: ignore[return-value]


# --- outbound -----------------------------------------------------------------------------------


class Subscription(Aggregate):
    """A subscriber: URL, event filter, secret, retry schedule; disabled when it keeps failing."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.created: c.WebhookSubscriptionCreated | None = None
        self.failures = 0
        self.disabled: str | None = None
        self.deleted = False

    @property
    def workspace_id(self) -> str:
        return self.created.workspace_id if self.created else ""

    @property
    def active(self) -> bool:
        return self.created is not None and not self.deleted and self.disabled is None

    def matches(self, event_type: str, plan_name: str | None) -> bool:
        assert self.created is not None
        if not any(fnmatchcase(event_type, pattern) for pattern in self.created.events):
            return False
        return self.created.plan is None or self.created.plan == plan_name

    def create(self, workspace_id: str, actor: str | None, **fields: Any) -> None:
        self.trigger(c.WebhookSubscriptionCreated, workspace_id=workspace_id, actor=actor, **fields)

    def delivery_failed(self, delivery_id: UUID) -> None:
        """A delivery was dead-lettered; too many in a row disable the subscription."""
        if not self.active:
            return
        self._trigger(
            c.WebhookSubscriptionFailing, delivery_id=delivery_id, failures=self.failures + 1
        )
        assert self.created is not None
        if self.failures >= self.created.disable_after:
            reason = f"{self.failures} deliveries in a row failed every attempt"
            self._trigger(c.WebhookSubscriptionDisabled, reason=reason)

    def delivery_succeeded(self) -> None:
        if self.failures and not self.deleted:
            self._trigger(c.WebhookSubscriptionRecovered)

    def set_enabled(self, enabled: bool, actor: str | None) -> None:
        if enabled and self.disabled is not None:
            self._trigger(c.WebhookSubscriptionEnabled, actor=actor)
        elif not enabled and self.disabled is None:
            self._trigger(c.WebhookSubscriptionDisabled, actor=actor, reason=f"by {actor}")

    def delete(self, actor: str | None) -> None:
        self._trigger(c.WebhookSubscriptionDeleted, actor=actor)

    def _trigger(self, event_class: type[Event], **fields: Any) -> Event:
        return self.trigger(event_class, workspace_id=self.workspace_id, **fields)

    def on_subscription_created(self, e: c.WebhookSubscriptionCreated) -> None:
        self.created = e

    def on_subscription_failing(self, e: c.WebhookSubscriptionFailing) -> None:
        self.failures = e.failures

    def on_subscription_recovered(self, _e: Event) -> None:
        self.failures = 0

    def on_subscription_disabled(self, e: c.WebhookSubscriptionDisabled) -> None:
        self.disabled = e.reason

    def on_subscription_enabled(self, _e: Event) -> None:
        self.disabled, self.failures = None, 0

    def on_subscription_deleted(self, _e: Event) -> None:
        self.deleted = True

    def view(self) -> dict[str, Any]:
        e = self.created
        assert e is not None
        return {
            "id": str(self.id),
            "url": e.url,
            "events": e.events,
            "plan": e.plan,
            "retry_schedule": e.retry_schedule,
            "disable_after": e.disable_after,
            "status": "deleted" if self.deleted else "disabled" if self.disabled else "enabled",
            "disabled_reason": self.disabled,
            "failures_in_a_row": self.failures,
            "created_at": _iso(e.occurred_at),
        }


def timer_id(delivery_id: UUID) -> str:
    """One timer per delivery: its next attempt (rewritten after each attempt)."""
    return f"webhook-delivery:{delivery_id}"


class Delivery(Aggregate):
    """One event for one subscription, attempt after attempt, with one ``webhook-id``."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.scheduled: c.WebhookDeliveryScheduled | None = None
        self.status = "new"  # pending | succeeded | dead
        self.attempts: list[dict[str, Any]] = []
        self.round_attempts = 0  # attempts since it was scheduled or redelivered
        self.next_at: datetime | None = None
        self.reason: str | None = None
        self.finished_at: datetime | None = None

    @property
    def workspace_id(self) -> str:
        return self.scheduled.workspace_id if self.scheduled else ""

    def collect_timers(self) -> tuple[list[Timer], list[str]]:
        """Its one timer: set to the next attempt while it is pending, else cleared."""
        tid = timer_id(self.id)
        if self.status == "pending" and self.next_at is not None:
            return [Timer(tid, self.next_at, {"delivery_id": str(self.id)})], []
        return [], [tid]

    def schedule(
        self,
        sub: Subscription,
        event_type: str,
        payload: dict[str, Any],
        now: datetime,
        source: UUID | None = None,
    ) -> None:
        self.trigger(
            c.WebhookDeliveryScheduled,
            workspace_id=sub.workspace_id,
            subscription_id=sub.id,
            url=sub.created.url if sub.created else "",
            event_type=event_type,
            message_id=f"msg_{self.id.hex}",
            payload=payload,
            source_event_id=source,
        )
        self.next_at = now

    def attempted(
        self,
        outcome: dict[str, Any],
        schedule: list[float],
        now: datetime,
        retry_after: float | None = None,
    ) -> None:
        """Record one attempt's outcome; then it succeeded, waits for the next attempt, or is
        dead-lettered after the schedule's last."""
        n = len(self.attempts) + 1
        ok = bool(outcome.get("ok"))
        next_at = None
        if not ok and self.round_attempts < len(schedule):
            wait = max(schedule[self.round_attempts], retry_after or 0.0)
            next_at = now + timedelta(seconds=wait)
        self._trigger(c.WebhookDeliveryAttempted, attempt=n, next_at=next_at, **outcome)
        if ok:
            self._trigger(c.WebhookDeliverySucceeded, attempts=n)
        elif next_at is None:
            reason = outcome.get("error") or f"HTTP {outcome.get('status_code')}"
            self.dead_letter(f"{n} attempts failed; the last: {reason}")

    def dead_letter(self, reason: str) -> None:
        self._trigger(c.WebhookDeliveryDeadLettered, attempts=len(self.attempts), reason=reason)

    def redeliver(self, actor: str | None, now: datetime) -> None:
        if self.status == "pending":
            raise Conflict(f"delivery {self.id} is still being attempted")
        self._trigger(c.WebhookRedeliveryRequested, actor=actor)
        self.next_at = now

    def _trigger(self, event_class: type[Event], **fields: Any) -> Event:
        return self.trigger(event_class, workspace_id=self.workspace_id, **fields)

    def on_delivery_scheduled(self, e: c.WebhookDeliveryScheduled) -> None:
        self.scheduled, self.status, self.next_at = e, "pending", e.occurred_at

    def on_delivery_attempted(self, e: c.WebhookDeliveryAttempted) -> None:
        keep = ("attempt", "ok", "status_code", "latency_ms", "response", "error", "next_at")
        self.attempts.append(
            {"at": _iso(e.occurred_at), **e.model_dump(mode="json", include=set(keep))}
        )
        self.round_attempts += 1
        self.next_at = e.next_at

    def on_delivery_succeeded(self, e: Event) -> None:
        self.status, self.finished_at, self.next_at = "succeeded", e.occurred_at, None

    def on_delivery_dead_lettered(self, e: c.WebhookDeliveryDeadLettered) -> None:
        self.status, self.finished_at, self.reason = "dead", e.occurred_at, e.reason
        self.next_at = None

    def on_redelivery_requested(self, e: Event) -> None:
        self.status, self.round_attempts, self.next_at = "pending", 0, e.occurred_at
        self.reason = None

    def view(self, with_payload: bool = False) -> dict[str, Any]:
        s = self.scheduled
        assert s is not None
        view: dict[str, Any] = {
            "id": str(self.id),
            "subscription_id": str(s.subscription_id),
            "url": s.url,
            "event_type": s.event_type,
            "message_id": s.message_id,
            "status": self.status,
            "attempts": self.attempts,
            "next_at": _iso(self.next_at),
            "reason": self.reason,
            "created_at": _iso(s.occurred_at),
            "finished_at": _iso(self.finished_at),
        }
        if with_payload:
            view["payload"] = s.payload
        return view
