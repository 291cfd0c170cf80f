"""The webhook application: endpoints and receipts (inbound), subscriptions and deliveries
(outbound). It loads aggregates from the store, hands them commands, and returns what to commit;
the callers (HTTP, request/reply, consumer, sender) commit and publish.

Everything is loaded from the store when touched, as in hitl: no cache to go stale between
replicas, and the store's version check settles races. Lists read the service's own events
table (``index.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, TypeVar
from uuid import UUID, uuid4

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.errors import Invalid, NotFound, ServiceError, TooLarge
from baton_common.events import Event
from baton_common.plans import PlanInvalid, validate_plan
from baton_common.sealing import Sealer, SealingError, redact_fields, sealed_values
from baton_common.snapshots import Snapshots
from baton_common.store import Commit, MemoryEventStore, PostgresEventStore, Timer, gathered

from baton_webhook.config import DEFAULT_RETRY_SCHEDULE, WebhookSettings
from baton_webhook.domain import (
    Delivery,
    Endpoint,
    Receipt,
    Subscription,
    delivery_id_for,
    endpoint_id_for,
    receipt_id_for,
    timer_id,
)
from baton_webhook.index import aggregate_ids
from baton_webhook.signing import new_secret, valid_standard_secret

log = logging.getLogger(__name__)
A = TypeVar("A", bound=Aggregate)
Store: TypeAlias = PostgresEventStore | MemoryEventStore
SCHEMES = ("standard", "github", "stripe", "none")
# Events travel on NATS, whose messages are at most 1 MiB by default: keep well under it.
EVENT_LIMIT = 900_000
LONG_LIVED = (Endpoint, Subscription)  # loaded through snapshots


def _uuid(value: Any, what: str) -> UUID:
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"no {what} {value}") from None


class WebhookApp:
    """Commands and reads of the webhook service, synchronous (call it from a thread)."""

    def __init__(
        self,
        store: Store,
        settings: WebhookSettings,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
        sealer: Sealer | None = None,
    ) -> None:
        self.store, self.settings, self.catalogue = store, settings, catalogue
        self.sealer = sealer or Sealer.in_memory()
        self.snapshots = Snapshots(store)

    def _load(self, cls: type[A], aggregate_id: UUID) -> A | None:
        if cls in LONG_LIVED:  # deliveries and receipts end; these live as long as a workspace
            return self.snapshots.load(cls, aggregate_id)
        return cls.rebuild(aggregate_id, self.store.load(aggregate_id))

    def _mine(self, cls: type[A], workspace_id: str, value: Any, what: str) -> A:
        """The caller's object, or 404: another workspace's is not there."""
        found = self._load(cls, _uuid(value, what))
        if found is None or getattr(found, "workspace_id", None) != workspace_id:
            raise NotFound(f"no {what} {value}")
        return found

    # --- endpoints ----------------------------------------------------------------------------

    def create_endpoint(
        self, workspace_id: str, actor: str | None, body: dict[str, Any]
    ) -> tuple[Commit, dict[str, Any]]:
        name = str(body.get("name") or "")
        scheme = body.get("scheme") or "standard"
        if scheme not in SCHEMES:
            raise Invalid(f"scheme: one of {', '.join(SCHEMES)}")
        if scheme == "none" and not body.get("allow_unsigned"):
            raise Invalid(
                "scheme 'none' accepts unsigned requests: say so with allow_unsigned: true"
            )
        secret = "" if scheme == "none" else _secret(body.get("secret"), scheme)
        endpoint = self._load(Endpoint, endpoint_id_for(workspace_id, name)) or Endpoint(
            endpoint_id_for(workspace_id, name)
        )
        action = self._action(body.get("action"))
        sealed = [self.sealer.seal(secret)] if secret else []
        try:
            endpoint.create(
                workspace_id,
                actor,
                name=name,
                scheme=scheme,
                secrets=sealed,
                action=action,
                **{k: body[k] for k in _LIMITS if body.get(k) is not None},
            )
        except ServiceError:  # the name is taken: no data key is left behind for nothing
            self.sealer.destroy(sealed)
            raise
        return Commit(events=endpoint.collect()), {
            **endpoint.view(self.settings.base_url),
            "secret": secret or None,
        }

    def _action(self, action: Any) -> dict[str, Any]:
        if not isinstance(action, dict):
            raise Invalid("action: {plan | request | plan_ref, inputs} is required")
        if sum(k in action for k in ("plan", "request", "plan_ref")) != 1:
            raise Invalid("action: give exactly one of plan, request or plan_ref")
        if "plan_ref" in action:
            try:
                action = {**action, "plan_ref": c.parse_plan_ref(action["plan_ref"])}
            except ValueError as exc:
                raise Invalid(f"action.{exc}") from None
        if "plan" in action:
            try:
                validate_plan(action["plan"], self.catalogue)
            except PlanInvalid as exc:
                raise Invalid(f"action.plan: {exc}") from None
        elif "request" in action and (
            not isinstance(action["request"], str) or not action["request"].strip()
        ):
            raise Invalid("action.request: the request in words")
        if not isinstance(action.get("inputs", {}), dict):
            raise Invalid("action.inputs: an object of input name → value or ${payload…}")
        return {k: action[k] for k in ("plan", "request", "plan_ref", "inputs") if k in action}

    def endpoint(self, workspace_id: str, endpoint_id: Any) -> Endpoint:
        found = self._load(Endpoint, _uuid(endpoint_id, "endpoint"))
        if found is None or not found.live or found.created.workspace_id != workspace_id:  # type: ignore[union-attr]
            raise NotFound(f"no endpoint {endpoint_id}")
        return found

    def live_endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint an inbound request names, if it exists (any workspace)."""
        try:
            found = self._load(Endpoint, UUID(endpoint_id))
        except ValueError:
            return None
        return found if found is not None and found.live else None

    def list_endpoints(self, workspace_id: str, limit: int = 500) -> list[dict[str, Any]]:
        ids = self._ids(c.WebhookEndpointCreated.TYPE, workspace_id, limit)
        found = [self._load(Endpoint, i) for i in ids]
        return [e.view(self.settings.base_url) for e in found if e is not None and e.live]

    def rotate(
        self, workspace_id: str, endpoint_id: Any, actor: str | None, keep_s: float
    ) -> tuple[Commit, dict[str, Any]]:
        endpoint = self.endpoint(workspace_id, endpoint_id)
        secret = new_secret()
        endpoint.rotate(self.sealer.seal(secret), keep_s, datetime.now(UTC), actor)
        view = endpoint.view(self.settings.base_url)
        return Commit(events=endpoint.collect()), {**view, "secret": secret}

    def delete_endpoint(self, workspace_id: str, endpoint_id: Any, actor: str | None) -> Commit:
        endpoint = self.endpoint(workspace_id, endpoint_id)
        endpoint.delete(actor)
        return Commit(events=endpoint.collect())

    def destroy_keys(self, aggregate_id: UUID) -> int:
        """Destroy the data keys of every secret an endpoint or subscription ever had (called
        once its deletion is committed): its history keeps only ciphertext no key opens."""
        history = self.store.load(aggregate_id)
        return self.sealer.destroy(s for e in history for s in sealed_values(e.model_dump()))

    def secrets_of(self, endpoint: Endpoint) -> list[str]:
        """The endpoint's valid secrets in clear, to verify a request with."""
        opened = []
        for sealed in endpoint.valid_secrets(datetime.now(UTC)):
            try:
                opened.append(self.sealer.unseal(sealed))
            except SealingError as exc:  # verifies with the others; says why in the log
                log.error("webhook endpoint %s: a secret cannot be opened: %s", endpoint.id, exc)
        return opened

    # --- inbound ------------------------------------------------------------------------------

    def receive(
        self, endpoint: Endpoint, delivery_id: str, payload: Any, headers: dict[str, str]
    ) -> tuple[Commit, c.StartRequested]:
        """The receipt and the start it asks for, in one commit; a repeated delivery id makes
        the commit conflict (version 1 of the receipt exists): that is the dedupe."""
        receipt = Receipt(receipt_id_for(endpoint.id, delivery_id))
        start = receipt.record(endpoint, delivery_id, payload, headers)
        events = receipt.collect()
        if len(events[0].to_json()) > EVENT_LIMIT:  # the body alone stays out of the event
            receipt = Receipt(receipt.id)
            start = receipt.record(endpoint, delivery_id, payload, headers, keep_payload=False)
            events = receipt.collect()
        if any(len(e.to_json()) > EVENT_LIMIT for e in events):
            raise TooLarge("the inputs mapped from this body are too large to record")
        return Commit(events=events), start

    def receipt(self, endpoint: Endpoint, delivery_id: str) -> c.WebhookReceived | None:
        history = self.store.load(receipt_id_for(endpoint.id, delivery_id))
        return next((e for e in history if isinstance(e, c.WebhookReceived)), None)

    # --- subscriptions ------------------------------------------------------------------------

    def create_subscription(
        self, workspace_id: str, actor: str | None, body: dict[str, Any]
    ) -> tuple[Commit, dict[str, Any]]:
        events = body.get("events") or []
        if not isinstance(events, list) or not all(isinstance(e, str) and e for e in events):
            raise Invalid("events: a list of event types (patterns like execution.* allowed)")
        schedule = body.get("retry_schedule", DEFAULT_RETRY_SCHEDULE)
        if not isinstance(schedule, list) or not all(
            isinstance(s, int | float) and 0 <= s <= 7 * 86400 for s in schedule
        ):
            raise Invalid("retry_schedule: seconds between attempts, each 0 … 604800")
        secret = _secret(body.get("secret"), "standard")
        sub = Subscription(uuid4())
        sub.create(
            workspace_id,
            actor,
            url=str(body.get("url") or ""),
            events=events,
            plan=body.get("plan"),
            secret=self.sealer.seal(secret),
            retry_schedule=[float(s) for s in schedule][:20],
            disable_after=int(body.get("disable_after") or 5),
        )
        return Commit(events=sub.collect()), {**sub.view(), "secret": secret}

    def subscription(self, workspace_id: str, subscription_id: Any) -> Subscription:
        sub = self._mine(Subscription, workspace_id, subscription_id, "subscription")
        if sub.deleted:
            raise NotFound(f"no subscription {subscription_id}")
        return sub

    def list_subscriptions(self, workspace_id: str | None, limit: int = 500) -> list[Subscription]:
        ids = self._ids(c.WebhookSubscriptionCreated.TYPE, workspace_id, limit)
        found = [self._load(Subscription, i) for i in ids]
        return [s for s in found if s is not None and not s.deleted]

    def change_subscription(
        self, workspace_id: str, subscription_id: Any, actor: str | None, change: str
    ) -> tuple[Commit, dict[str, Any]]:
        sub = self.subscription(workspace_id, subscription_id)
        if change == "delete":
            sub.delete(actor)
        else:
            sub.set_enabled(change == "enable", actor)
        return Commit(events=sub.collect()), sub.view()

    def test_delivery(self, workspace_id: str, subscription_id: Any) -> tuple[Commit, Delivery]:
        """A ``webhook.test`` event for one subscription, delivered like any other."""
        sub = self.subscription(workspace_id, subscription_id)
        now = datetime.now(UTC)
        delivery = Delivery(delivery_id_for(sub.id, uuid4()))
        payload = _payload("webhook.test", now, {"subscription_id": str(sub.id), "test": True})
        delivery.schedule(sub, "webhook.test", payload, now)
        return gathered([delivery]), delivery

    # --- outbound: from events to deliveries --------------------------------------------------

    def deliveries_for(
        self, events: Iterable[Event], subs: list[Subscription], plan_of: Any
    ) -> Commit:
        """A delivery per (event, matching subscription) made after the subscription; a bus
        message seen again finds its delivery already stored and makes none."""
        now = datetime.now(UTC)
        made: list[Delivery] = []
        for event in events:
            for sub in subs:
                if not self._wants(sub, event, plan_of):
                    continue
                delivery_id = delivery_id_for(sub.id, event.event_id)
                if self.store.load(delivery_id):
                    continue
                delivery = Delivery(delivery_id)
                # A subscriber to webhook.* or calendar.* never gets a secret, sealed or not.
                data = redact_fields(event.model_dump(mode="json"))
                delivery.schedule(
                    sub,
                    event.type,
                    _payload(event.type, event.occurred_at, data),
                    now,
                    event.event_id,
                )
                made.append(delivery)
        return gathered(made)

    @staticmethod
    def _wants(sub: Subscription, event: Event, plan_of: Any) -> bool:
        assert sub.created is not None
        if not sub.active or sub.workspace_id != event.workspace_id:
            return False
        if event.occurred_at < sub.created.occurred_at:
            return False  # an event from before the subscription (a lagging consumer)
        plan = plan_of(event) if sub.created.plan is not None else None
        return sub.matches(event.type, plan)

    # --- outbound: attempts -------------------------------------------------------------------

    def due_job(
        self, delivery_id: UUID
    ) -> tuple[Commit | None, Delivery | None, Subscription | None]:
        """What a due timer asks: (a commit that settles it without sending, or the delivery
        and its subscription to send to)."""
        delivery = self._load(Delivery, delivery_id)
        if delivery is None or delivery.status != "pending":
            return Commit(timers_clear=[timer_id(delivery_id)]), None, None
        assert delivery.scheduled is not None
        sub = self._load(Subscription, delivery.scheduled.subscription_id)
        if sub is None or not sub.active:
            why = "deleted" if sub is None or sub.deleted else f"disabled ({sub.disabled})"
            delivery.dead_letter(f"the subscription is {why}")
            return gathered([delivery]), None, None
        return None, delivery, sub

    def lease(self, delivery_id: UUID, seconds: float) -> Commit:
        """Push the timer past the attempt in hand: another poll (or replica) waits for it, and
        a process that dies mid-attempt has it fire again later (at least once)."""
        due = datetime.now(UTC) + timedelta(seconds=seconds)
        return Commit(
            timers_set=[Timer(timer_id(delivery_id), due, {"delivery_id": str(delivery_id)})]
        )

    def attempted(
        self, delivery_id: UUID, outcome: dict[str, Any], retry_after: float | None
    ) -> Commit:
        """Record an attempt; the subscription hears about a dead letter or a recovery."""
        delivery = self._load(Delivery, delivery_id)
        if delivery is None or delivery.status != "pending" or delivery.scheduled is None:
            return Commit()  # settled meanwhile (another replica's attempt)
        sub = self._load(Subscription, delivery.scheduled.subscription_id)
        schedule = sub.created.retry_schedule if sub and sub.created else []
        delivery.attempted(outcome, schedule, datetime.now(UTC), retry_after)
        touched: list[Aggregate] = [delivery]
        if sub is not None and delivery.status != "pending":
            if delivery.status == "dead":
                sub.delivery_failed(delivery.id)
            else:
                sub.delivery_succeeded()
            touched.append(sub)
        return gathered(touched)

    # --- delivery log -------------------------------------------------------------------------

    def delivery(self, workspace_id: str, delivery_id: Any) -> Delivery:
        return self._mine(Delivery, workspace_id, delivery_id, "delivery")

    def list_deliveries(
        self, workspace_id: str, subscription: str | None, status: str | None, limit: int
    ) -> list[dict[str, Any]]:
        ids = self._ids(
            c.WebhookDeliveryScheduled.TYPE, workspace_id, limit * 4 if status else limit
        )
        out: list[dict[str, Any]] = []
        for delivery in (self._load(Delivery, i) for i in ids):
            if delivery is None or delivery.scheduled is None:
                continue
            if subscription and str(delivery.scheduled.subscription_id) != subscription:
                continue
            if status and delivery.status != status:
                continue
            out.append(delivery.view())
        return out[:limit]

    def redeliver(
        self, workspace_id: str, delivery_id: Any, actor: str | None
    ) -> tuple[Commit, Delivery]:
        delivery = self.delivery(workspace_id, delivery_id)
        delivery.redeliver(actor, datetime.now(UTC))
        return gathered([delivery]), delivery

    def redeliver_failed(
        self, workspace_id: str, since: datetime, subscription: str | None, actor: str | None
    ) -> tuple[Commit, list[str]]:
        """Every dead-lettered delivery (of one subscription, if given) that failed since."""
        ids = self._ids(c.WebhookDeliveryDeadLettered.TYPE, workspace_id, 10_000, since)
        chosen: list[Delivery] = []
        for delivery in (self._load(Delivery, i) for i in dict.fromkeys(ids)):
            if delivery is None or delivery.status != "dead" or delivery.scheduled is None:
                continue
            if subscription and str(delivery.scheduled.subscription_id) != subscription:
                continue
            delivery.redeliver(actor, datetime.now(UTC))
            chosen.append(delivery)
        return gathered(chosen), [str(d.id) for d in chosen]

    # --- lists -------------------------------------------------------------------------------

    def _ids(
        self, topic: str, workspace_id: str | None, limit: int, since: datetime | None = None
    ) -> list[UUID]:
        return aggregate_ids(self.store, topic, workspace_id, limit, since)


_LIMITS = ("tolerance_s", "max_body_bytes", "content_types", "rate_per_minute")


def _secret(given: Any, scheme: str) -> str:
    """A new secret, or the caller's: for Standard Webhooks ``whsec_`` and 24+ bytes of base64
    (what every Standard Webhooks library expects)."""
    if not given:
        return new_secret()
    secret = str(given)
    if scheme == "standard" and not valid_standard_secret(secret):
        raise Invalid("secret: a Standard Webhooks secret is whsec_ and 24 to 64 bytes in base64")
    return secret


def _payload(event_type: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The Standard Webhooks body: ``{type, timestamp, data}``."""
    return {"type": event_type, "timestamp": at.isoformat(), "data": data}


__all__ = ["WebhookApp"]
