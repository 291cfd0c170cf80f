"""Webhooks: endpoints, receipts, subscriptions and deliveries (the webhook service)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from baton_common.contracts.calls import ServiceCall, ServiceReply
from baton_common.events import Event

Json = dict[str, Any]


# --- webhooks (owned by the webhook service) -------------------------------------------------------
# Secrets travel in the endpoint and subscription events sealed (``sealing.py``: ``sealed:v1:…``,
# opened only by the webhook service, to compute HMACs); events from before sealing hold them in
# clear and are read as they are. Views, triggers and deliveries show them as ``***``.


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


class _DeliveryEnded(Event):
    """A delivery's outcome, after ``attempts`` attempts."""

    attempts: int


class WebhookDeliverySucceeded(_DeliveryEnded):
    """The subscriber answered 2xx."""

    TYPE = "webhook.delivery_succeeded"


class WebhookDeliveryDeadLettered(_DeliveryEnded):
    """Every attempt failed: the delivery waits in the dead letter for a manual redeliver."""

    TYPE = "webhook.delivery_dead_lettered"

    reason: str


class WebhookRedeliveryRequested(Event):
    """A person asked to send it again: a new round of attempts, with the same ``webhook-id``."""

    TYPE = "webhook.redelivery_requested"


def webhook_rpc_subject(root: str) -> str:
    """Where the webhook service answers the gateway (NATS request/reply, queue group webhook)."""
    return f"{root}_rpc.webhook.call"


class WebhookCall(ServiceCall):
    """One operation of the webhooks API (``endpoint.create``, ``delivery.list``, …), forwarded
    by the gateway for the caller's workspace."""


class WebhookReply(ServiceReply):
    """The webhook service's answer: an HTTP status, a reason when it failed, and a JSON body."""
