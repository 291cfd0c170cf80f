"""The webhooks API over NATS request/reply (the kit's server, queue group ``webhook``): the
gateway forwards each call with the caller's workspace, and the service answers from its own
store.

Request/reply rather than a read model: the objects are this service's aggregates, a change
must be committed before the caller hears 201 (and sees a secret that works), and a read right
after a write must see it. A call is answered only after its commit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from baton_common.contracts import WebhookCall, WebhookReply, webhook_rpc_subject
from baton_common.egress import EgressRefused
from baton_common.errors import Conflict, Invalid
from baton_common.kit.rpc import CallServer
from baton_common.service import Runtime
from baton_common.store import Commit, ConcurrencyConflict, run_sync

from baton_webhook.application import WebhookApp
from baton_webhook.config import WebhookSettings
from baton_webhook.handlers import Subscriptions

log = logging.getLogger(__name__)
Op = Callable[[WebhookCall], Awaitable[WebhookReply]]


class WebhookCalls:
    """The gateway's webhook calls, by operation; every change is committed before the answer."""

    def __init__(
        self, runtime: Runtime, app: WebhookApp, settings: WebhookSettings, subs: Subscriptions
    ) -> None:
        self.runtime, self.app, self.subs = runtime, app, subs
        self.guard = settings.guard()
        self.ops: dict[str, Op] = {
            "endpoint.create": self.create_endpoint,
            "endpoint.list": self.list_endpoints,
            "endpoint.get": self.get_endpoint,
            "endpoint.rotate": self.rotate_endpoint,
            "endpoint.delete": self.delete_endpoint,
            "subscription.create": self.create_subscription,
            "subscription.list": self.list_subscriptions,
            "subscription.get": self.get_subscription,
            "subscription.change": self.change_subscription,
            "subscription.test": self.test_subscription,
            "delivery.list": self.list_deliveries,
            "delivery.get": self.get_delivery,
            "delivery.redeliver": self.redeliver,
            "delivery.redeliver_failed": self.redeliver_failed,
        }

    def server(self) -> CallServer[WebhookCall, WebhookReply]:
        subject = webhook_rpc_subject(self.runtime.settings.subject_root)
        return CallServer(self.runtime, "webhook", subject, WebhookCall, WebhookReply, self.ops)

    async def _commit(self, commit: Commit) -> None:
        assert self.runtime.store is not None
        rows = await run_sync(self.runtime.store.commit, commit)
        if rows and self.runtime.relay:
            self.runtime.relay.committed(rows)

    # --- endpoints ----------------------------------------------------------------------------

    async def create_endpoint(self, call: WebhookCall) -> WebhookReply:
        commit, view = await run_sync(
            self.app.create_endpoint, call.workspace_id, call.actor, call.body
        )
        try:
            await self._commit(commit)
        except ConcurrencyConflict:
            raise Conflict(f"an endpoint named {call.body.get('name')!r} exists") from None
        return WebhookReply(status=201, body=view)

    async def list_endpoints(self, call: WebhookCall) -> WebhookReply:
        items = await run_sync(self.app.list_endpoints, call.workspace_id)
        return WebhookReply(status=200, body={"items": items})

    async def get_endpoint(self, call: WebhookCall) -> WebhookReply:
        endpoint = await run_sync(self.app.endpoint, call.workspace_id, call.body.get("id"))
        return WebhookReply(status=200, body=endpoint.view(self.app.settings.base_url))

    async def rotate_endpoint(self, call: WebhookCall) -> WebhookReply:
        keep = float(call.body.get("keep_previous_s") or 86400)
        commit, view = await run_sync(
            self.app.rotate, call.workspace_id, call.body.get("id"), call.actor, keep
        )
        await self._commit(commit)
        return WebhookReply(status=200, body=view)

    async def delete_endpoint(self, call: WebhookCall) -> WebhookReply:
        commit = await run_sync(
            self.app.delete_endpoint, call.workspace_id, call.body.get("id"), call.actor
        )
        await self._commit(commit)
        # After the commit: a failed commit leaves a live endpoint whose secrets still open.
        await run_sync(self.app.destroy_keys, commit.events[0].aggregate_id)
        return WebhookReply(status=204)

    # --- subscriptions ------------------------------------------------------------------------

    async def create_subscription(self, call: WebhookCall) -> WebhookReply:
        try:
            await self.guard.check_url(str(call.body.get("url") or ""))
        except EgressRefused as exc:
            raise Invalid(f"url: {exc}") from None
        commit, view = await run_sync(
            self.app.create_subscription, call.workspace_id, call.actor, call.body
        )
        await self._commit(commit)
        self.subs.invalidate()
        return WebhookReply(status=201, body=view)

    async def list_subscriptions(self, call: WebhookCall) -> WebhookReply:
        subs = await run_sync(self.app.list_subscriptions, call.workspace_id)
        return WebhookReply(status=200, body={"items": [s.view() for s in subs]})

    async def get_subscription(self, call: WebhookCall) -> WebhookReply:
        sub = await run_sync(self.app.subscription, call.workspace_id, call.body.get("id"))
        return WebhookReply(status=200, body=sub.view())

    async def change_subscription(self, call: WebhookCall) -> WebhookReply:
        change = str(call.body.get("change"))
        commit, view = await run_sync(
            self.app.change_subscription, call.workspace_id, call.body.get("id"), call.actor, change
        )
        await self._commit(commit)
        if change == "delete" and commit.events:
            await run_sync(self.app.destroy_keys, commit.events[0].aggregate_id)
        self.subs.invalidate()
        return WebhookReply(status=204 if change == "delete" else 200, body=view)

    async def test_subscription(self, call: WebhookCall) -> WebhookReply:
        commit, delivery = await run_sync(
            self.app.test_delivery, call.workspace_id, call.body.get("id")
        )
        await self._commit(commit)
        return WebhookReply(status=202, body=delivery.view())

    # --- deliveries ---------------------------------------------------------------------------

    async def list_deliveries(self, call: WebhookCall) -> WebhookReply:
        b = call.body
        items = await run_sync(
            self.app.list_deliveries,
            call.workspace_id,
            b.get("subscription"),
            b.get("status"),
            int(b.get("limit") or 100),
        )
        return WebhookReply(status=200, body={"items": items})

    async def get_delivery(self, call: WebhookCall) -> WebhookReply:
        delivery = await run_sync(self.app.delivery, call.workspace_id, call.body.get("id"))
        return WebhookReply(status=200, body=delivery.view(with_payload=True))

    async def redeliver(self, call: WebhookCall) -> WebhookReply:
        commit, delivery = await run_sync(
            self.app.redeliver, call.workspace_id, call.body.get("id"), call.actor
        )
        await self._commit(commit)
        return WebhookReply(status=202, body=delivery.view())

    async def redeliver_failed(self, call: WebhookCall) -> WebhookReply:
        since = _since(call.body.get("since"))
        commit, ids = await run_sync(
            self.app.redeliver_failed,
            call.workspace_id,
            since,
            call.body.get("subscription"),
            call.actor,
        )
        await self._commit(commit)
        return WebhookReply(status=202, body={"redelivered": ids})


def _since(value: Any) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        raise Invalid("since: an ISO-8601 time with its zone") from None
    if when.tzinfo is None:
        raise Invalid("since: an ISO-8601 time with its zone")
    return when
