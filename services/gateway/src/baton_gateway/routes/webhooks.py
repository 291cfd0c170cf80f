"""Webhooks: inbound endpoints, outbound subscriptions and the delivery log.

Each call is forwarded to the webhook service, which owns these aggregates, over NATS
request/reply with the caller's workspace: it commits a change before it answers (a 201 means
the endpoint exists and its secret works), and a read right after a write sees it. Another
workspace's object is a 404, said by the service. Inbound ``/hooks/{endpoint}`` is the webhook
service's own listener, authenticated by signatures, not here.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from baton_common.contracts import WebhookCall, WebhookReply, webhook_rpc_subject
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from nats.errors import Error as NatsError
from nats.js.api import DeliverPolicy
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import WithJsonSchema
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask

from baton_gateway.domain import Principal
from baton_gateway.openapi import PLAN_OBJECT, exactly_one_of
from baton_gateway.routes.deps import Reader, Runner, services_of, still_allowed
from baton_gateway.routes.rpc import Forward, Forwarding
from baton_gateway.routes.saved import saved_plan_named
from baton_gateway.services import Services
from baton_gateway.vetting import sealed

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
# What the webhook service accepts as an endpoint's action (it checks it, and keeps only these).
ActionSchema = WithJsonSchema(
    {
        "type": "object",
        "properties": {
            "plan": PLAN_OBJECT,
            "request": {"type": "string", "pattern": r"\S"},
            "plan_ref": {"anyOf": [{"type": "string"}, {"type": "object"}]},
            "inputs": {"type": "object"},
        },
        **exactly_one_of("plan", "request", "plan_ref"),
    }
)


class EndpointBody(BaseModel):
    """An inbound endpoint: how senders sign, and what a delivery starts."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    scheme: Literal["standard", "github", "stripe", "none"] = "standard"
    secret: str | None = Field(None, min_length=8, max_length=200)
    action: Annotated[dict[str, Any], ActionSchema] = Field(
        description="{plan | request | plan_ref, inputs}: inputs may use ${payload.…} and "
        "${headers.…}"
    )
    allow_unsigned: bool = Field(False, description="required with scheme none")
    tolerance_s: float | None = Field(None, gt=0, le=86400)
    max_body_bytes: int | None = Field(None, gt=0, le=16 * 1024 * 1024)
    content_types: list[str] | None = None
    rate_per_minute: int | None = Field(None, gt=0, le=100_000)


class RotateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_previous_s: float = Field(86400, ge=0, le=30 * 86400)


class SubscriptionBody(BaseModel):
    """An outbound subscription: where to post, which events, and how to retry."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        max_length=2000,
        # published, not enforced here: the webhook service says why a URL will not do
        json_schema_extra={"format": "uri", "pattern": r"^https?://[^\s/?#]+"},
    )
    events: list[str] = Field(min_length=1, description="event types; patterns like execution.*")
    plan: str | None = Field(None, description="only events of executions of this plan")
    secret: str | None = Field(None, min_length=8, max_length=200)
    retry_schedule: list[float] | None = Field(
        None, description="seconds before each retry (default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h)"
    )
    disable_after: int | None = Field(None, ge=1, le=1000)


class RedeliverBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: datetime
    subscription: UUID | None = None


call = Forward(webhook_rpc_subject, WebhookCall, WebhookReply, "the webhook service")


# --- endpoints ------------------------------------------------------------------------------------


@router.post("/endpoints", status_code=201)
async def create_endpoint(
    body: EndpointBody, who: Principal = Runner, s: Services = Depends(services_of)
) -> Response:
    """→ ``{id, url, secret, …}``: post webhooks to ``url``; the secret is shown once. A saved
    plan the action names (``plan_ref``) must exist (a 404)."""
    await saved_plan_named(s, who, body.action.get("plan_ref"))
    data = body.model_dump(exclude_none=True)
    data["action"] = await sealed(data["action"], s.sealer)  # its plan's secret tool inputs
    return await call(s, who, "endpoint.create", 201, **data)


forward = Forwarding(router, call)
forward.add("GET /endpoints", "endpoint.list", "list_endpoints", Reader)
forward.add("GET /endpoints/{endpoint_id}", "endpoint.get", "get_endpoint", Reader)


@router.post("/endpoints/{endpoint_id}/rotate")
async def rotate_endpoint(
    endpoint_id: UUID,
    body: RotateBody | None = None,
    who: Principal = Runner,
    s: Services = Depends(services_of),
) -> Response:
    """A new secret (shown once); the previous one stays valid for ``keep_previous_s``."""
    keep = (body or RotateBody()).keep_previous_s
    return await call(s, who, "endpoint.rotate", 200, id=str(endpoint_id), keep_previous_s=keep)


forward.add("DELETE /endpoints/{endpoint_id}", "endpoint.delete", "delete_endpoint", Runner, ok=204)

# --- subscriptions --------------------------------------------------------------------------------

forward.add(
    "POST /subscriptions",
    "subscription.create",
    "create_subscription",
    Runner,
    ok=201,
    body=SubscriptionBody,
    doc="→ ``{id, secret, …}``; a URL that resolves to a private address is a 422.",
)
forward.add("GET /subscriptions", "subscription.list", "list_subscriptions", Reader)
subscription = "/subscriptions/{subscription_id}"
forward.add(f"GET {subscription}", "subscription.get", "get_subscription", Reader)
forward.add(
    f"DELETE {subscription}",
    "subscription.change",
    "delete_subscription",
    Runner,
    ok=204,
    change="delete",
)
forward.add(
    f"POST {subscription}/enable",
    "subscription.change",
    "enable_subscription",
    Runner,
    change="enable",
    doc="Send events to a disabled subscription again (its failure count starts over).",
)
forward.add(
    f"POST {subscription}/disable",
    "subscription.change",
    "disable_subscription",
    Runner,
    change="disable",
)
forward.add(
    f"POST {subscription}/test",
    "subscription.test",
    "test_subscription",
    Runner,
    ok=202,
    doc="Send a ``webhook.test`` event to the subscriber: → the delivery (follow its attempts).",
)


# --- deliveries -----------------------------------------------------------------------------------


@router.get("/deliveries")
async def list_deliveries(
    who: Principal = Reader,
    s: Services = Depends(services_of),
    subscription: UUID | None = None,
    status: Literal["pending", "succeeded", "dead"] | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> Response:
    """The delivery log, newest first: each delivery with its attempts."""
    sub = str(subscription) if subscription else None
    return await call(s, who, "delivery.list", 200, subscription=sub, status=status, limit=limit)


@router.post("/deliveries/redeliver", status_code=202)
async def redeliver_failed(
    body: RedeliverBody, who: Principal = Runner, s: Services = Depends(services_of)
) -> Response:
    """Send again every dead-lettered delivery that failed since ``since``."""
    sub = str(body.subscription) if body.subscription else None
    since = body.since.isoformat()
    return await call(s, who, "delivery.redeliver_failed", 202, since=since, subscription=sub)


forward.add(
    "GET /deliveries/{delivery_id}",
    "delivery.get",
    "get_delivery",
    Reader,
    doc="One delivery: its payload, and each attempt with status, latency and response excerpt.",
)
forward.add(
    "POST /deliveries/{delivery_id}/redeliver", "delivery.redeliver", "redeliver", Runner, ok=202
)


# --- live -----------------------------------------------------------------------------------------


@router.get("/stream")
async def live(
    request: Request, who: Principal = Reader, s: Services = Depends(services_of)
) -> EventSourceResponse:
    """The workspace's webhook events as they happen, from now on (SSE, each named by its type:
    ``webhook.endpoint_*``, ``webhook.subscription_*``, ``webhook.delivery_*``, …). Each says
    what changed (type, object id, time), never a payload or a secret: read the object for that.
    The subscription exists before the response starts, so a client that reads the lists once
    the stream is open misses nothing between the two (the dashboard's Webhooks page does)."""
    settings = s.bus.settings
    subject = f"{settings.subject_root}.{who.workspace_id}.webhook.>"
    try:
        sub = await s.bus.js.subscribe(
            subject, stream=settings.stream, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
    except (NatsError, TimeoutError):  # the bus is down or refused: nothing to follow
        raise HTTPException(503, "the event bus is not available: try again") from None
    # Ended after the response in every case, also one whose stream never started (a client
    # gone at once): a forgotten subscription would take the workspace's events for good.
    done = BackgroundTask(_unsubscribe, sub)
    return EventSourceResponse(_webhook_events(sub, request), ping=10, background=done)


async def _webhook_events(sub: Any, request: Request) -> AsyncIterator[dict[str, Any]]:
    try:
        while await still_allowed(request):
            try:
                msg = await sub.next_msg(timeout=1.0)
            except TimeoutError:
                continue
            except NatsError:  # the connection closed: end here, the client opens a new one
                return
            event = json.loads(msg.data)
            data = {
                "type": event["type"],
                "id": event["aggregate_id"],
                "occurred_at": event["occurred_at"],
            }
            yield {"event": data["type"], "data": json.dumps(data)}
    finally:
        await _unsubscribe(sub)


async def _unsubscribe(sub: Any) -> None:
    with contextlib.suppress(NatsError):  # ended already, or the connection is gone
        await sub.unsubscribe()
