"""The webhook application on the in-memory store: endpoints, receipts (dedupe), subscriptions,
deliveries with retries, dead letters, disabling and redelivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from baton_common import contracts as c
from baton_common.errors import Conflict, Invalid, NotFound
from baton_common.sealing import KeyDestroyed
from baton_common.store import Commit, ConcurrencyConflict, MemoryEventStore
from baton_common.testing import state_of
from baton_webhook.application import WebhookApp
from baton_webhook.config import WebhookSettings
from baton_webhook.domain import Endpoint, Subscription, timer_id
from baton_webhook.inputs import map_inputs

PLAN = {"name": "greet", "steps": [{"id": "a", "tool": "mock.agent", "input": {"output": "x"}}]}


@pytest.fixture
def app() -> WebhookApp:
    return WebhookApp(MemoryEventStore("webhook"), WebhookSettings(BATON_WEBHOOK_PORT=9999))


def endpoint(app: WebhookApp, **body: Any) -> dict[str, Any]:
    action = {"plan": PLAN, "inputs": {"who": "${payload.user.name}"}}
    commit, view = app.create_endpoint(
        "acme", "ann (admin)", {"name": "gh", "action": action, **body}
    )
    app.store.commit(commit)
    return view


def test_an_endpoint_has_a_url_and_a_secret_and_a_name_once(app: WebhookApp) -> None:
    view = endpoint(app)
    assert view["url"] == f"http://127.0.0.1:9999/hooks/{view['id']}"
    assert view["secret"].startswith("whsec_") and view["scheme"] == "standard"
    with pytest.raises(Conflict):
        endpoint(app)
    with pytest.raises(NotFound):
        app.endpoint("other", view["id"])
    assert [e["name"] for e in app.list_endpoints("acme")] == ["gh"]
    assert app.list_endpoints("other") == []


def test_bad_actions_are_refused(app: WebhookApp) -> None:
    for action, match in (
        ({"plan_ref": "deploy@x"}, "plan_ref: the version is a number"),
        ({"plan_ref": "deploy@3", "plan": PLAN}, "exactly one"),
        ({"plan": {"steps": [{"id": "a", "tool": "nope"}]}}, "unknown tool"),
        ({"plan": PLAN, "request": "x"}, "exactly one"),
        (None, "required"),
    ):
        with pytest.raises(Invalid, match=match):
            app.create_endpoint("acme", None, {"name": "x", "action": action})
    with pytest.raises(Invalid, match="allow_unsigned"):
        app.create_endpoint(
            "acme", None, {"name": "x", "scheme": "none", "action": {"request": "r"}}
        )


def test_a_receipt_starts_once_per_delivery_id(app: WebhookApp) -> None:
    view = endpoint(app)
    found = app.live_endpoint(view["id"])
    assert found is not None
    commit, start = app.receive(found, "d1", {"user": {"name": "Ada"}}, {"x-a": "1"})
    app.store.commit(commit)
    assert [type(e) for e in commit.events] == [c.WebhookReceived, c.StartRequested]
    assert start.idempotency_key == "webhook:gh:d1" and start.inputs == {"who": "Ada"}
    assert start.plan == PLAN and start.source == "webhook"
    again, _ = app.receive(found, "d1", {"user": {"name": "Bob"}}, {})
    with pytest.raises(ConcurrencyConflict):
        app.store.commit(again)
    received = app.receipt(found, "d1")
    assert received is not None and received.payload == {"user": {"name": "Ada"}}


def test_map_inputs() -> None:
    payload = {"a": {"b": [1, {"c": True}]}, "s": "x"}
    template = {
        "whole": "${payload.a.b}",
        "deep": "${payload.a.b.1.c}",
        "text": "s=${payload.s} h=${headers.x-id}",
        "missing": "${payload.nope.no}",
        "fixed": 3,
    }
    assert map_inputs(template, payload, {"x-id": "7"}) == {
        "whole": [1, {"c": True}],
        "deep": True,
        "text": "s=x h=7",
        "missing": None,
        "fixed": 3,
    }


def test_rotation_keeps_the_previous_secret_for_a_while(app: WebhookApp) -> None:
    view = endpoint(app)
    commit, rotated = app.rotate("acme", view["id"], None, 60)
    app.store.commit(commit)
    found = app.live_endpoint(view["id"])
    assert found is not None
    now = datetime.now(UTC)

    def opened(at: datetime) -> list[str]:
        return [app.sealer.unseal(s) for s in found.valid_secrets(at)]

    assert opened(now) == [rotated["secret"], view["secret"]]
    assert opened(now + timedelta(minutes=2)) == [rotated["secret"]]
    assert app.secrets_of(found) == [rotated["secret"], view["secret"]]


def test_secrets_are_sealed_in_events_and_shredded_when_deleted(app: WebhookApp) -> None:
    view = endpoint(app)
    commit, rotated = app.rotate("acme", view["id"], None, 60)
    app.store.commit(commit)
    sub = subscribe(app)
    stored = [e.model_dump_json() for i in (view["id"], sub["id"]) for e in app.store.load(UUID(i))]
    text = "".join(stored)
    assert "sealed:v1:" in text
    assert all(s[6:] not in text for s in (view["secret"], rotated["secret"], sub["secret"]))
    app.store.commit(app.delete_endpoint("acme", view["id"], None))
    assert app.destroy_keys(UUID(view["id"])) == 2  # the current secret and the rotated-out one
    found = app.store.load(UUID(view["id"]))
    with pytest.raises(KeyDestroyed):
        app.sealer.unseal(found[0].secrets[0])  # type: ignore[attr-defined]
    commit, _ = app.change_subscription("acme", sub["id"], None, "delete")
    app.store.commit(commit)
    assert app.destroy_keys(UUID(sub["id"])) == 1


def subscribe(app: WebhookApp, **body: Any) -> dict[str, Any]:
    commit, view = app.create_subscription(
        "acme", None, {"url": "http://127.0.0.1:1/", "events": ["execution.*"], **body}
    )
    app.store.commit(commit)
    return view


def succeeded(workspace: str = "acme") -> c.ExecutionSucceeded:
    return c.ExecutionSucceeded(aggregate_id=uuid4(), aggregate_version=5, workspace_id=workspace)


def test_events_become_deliveries_once_for_matching_subscriptions(app: WebhookApp) -> None:
    sub = subscribe(app, retry_schedule=[0, 0])
    subscribe(app, events=["approval.*"])
    subs = app.list_subscriptions(None)
    event, other = succeeded(), succeeded("other")
    commit = app.deliveries_for([event, other], subs, lambda e: None)
    app.store.commit(commit)
    assert len(commit.events) == 1 and len(commit.timers_set) == 1
    assert app.deliveries_for([event], subs, lambda e: None).events == []  # seen again: none
    [listed] = app.list_deliveries("acme", None, None, 10)
    assert listed["subscription_id"] == sub["id"] and listed["status"] == "pending"
    assert app.list_deliveries("other", None, None, 10) == []


def test_plan_filter(app: WebhookApp) -> None:
    subscribe(app, plan="greet")
    subs = app.list_subscriptions(None)
    assert app.deliveries_for([succeeded()], subs, lambda e: "other").events == []
    assert len(app.deliveries_for([succeeded()], subs, lambda e: "greet").events) == 1


def deliver_one(app: WebhookApp, **body: Any) -> Any:
    subscribe(app, **body)
    app.store.commit(
        app.deliveries_for([succeeded()], app.list_subscriptions(None), lambda e: None)
    )
    return app.list_deliveries("acme", None, None, 1)[0]["id"]


FAIL = {"ok": False, "status_code": 500, "latency_ms": 1.0, "response": "no", "error": "HTTP 500"}
OK = {"ok": True, "status_code": 200, "latency_ms": 1.0, "response": "{}", "error": None}


def test_retries_then_success_keep_one_message_id(app: WebhookApp) -> None:
    delivery_id = deliver_one(app, retry_schedule=[5, 300])
    for outcome in (FAIL, FAIL, OK):
        commit = app.attempted(delivery_id, outcome, None)
        app.store.commit(commit)
    d = app.delivery("acme", delivery_id)
    assert d.status == "succeeded" and [a["status_code"] for a in d.attempts] == [500, 500, 200]
    assert commit.timers_clear == [timer_id(d.id)]


def test_retry_after_is_honoured_and_the_last_attempt_dead_letters(app: WebhookApp) -> None:
    delivery_id = deliver_one(app, retry_schedule=[1], disable_after=1)
    commit = app.attempted(delivery_id, FAIL, 120)
    app.store.commit(commit)
    assert commit.timers_set[0].due_at > datetime.now(UTC) + timedelta(seconds=100)
    app.store.commit(app.attempted(delivery_id, FAIL, None))
    d = app.delivery("acme", delivery_id)
    assert d.status == "dead" and "2 attempts failed" in (d.reason or "")
    [sub] = app.list_subscriptions("acme")
    assert sub.disabled and "1 deliveries in a row" in sub.disabled
    with pytest.raises(NotFound):
        app.delivery("other", delivery_id)
    commit, ids = app.redeliver_failed("acme", datetime.now(UTC) - timedelta(minutes=1), None, None)
    app.store.commit(commit)
    assert ids == [str(delivery_id)] and app.delivery("acme", delivery_id).status == "pending"
    with pytest.raises(Conflict):
        app.redeliver("acme", delivery_id, None)
    settled, job, _ = app.due_job(delivery_id)  # the subscription is disabled: dead again
    assert job is None and settled is not None
    app.store.commit(settled)
    assert app.delivery("acme", delivery_id).status == "dead"


def test_a_standard_secret_must_be_one(app: WebhookApp) -> None:
    with pytest.raises(Invalid, match="whsec_"):
        endpoint(app, secret="not-base64!")
    view = endpoint(app, name="gh2", scheme="github", secret="any string works")
    assert view["secret"] == "any string works"


def test_a_body_too_large_for_an_event_leaves_only_its_inputs(app: WebhookApp) -> None:
    found = app.live_endpoint(endpoint(app)["id"])
    assert found is not None
    big = {"user": {"name": "Ada"}, "blob": "x" * 950_000}
    commit, start = app.receive(found, "big", big, {})
    received = commit.events[0]
    assert isinstance(received, c.WebhookReceived)
    assert received.payload is None and received.payload_omitted and start.inputs == {"who": "Ada"}


async def test_the_subscription_list_is_read_again_once_the_store_moved(app: WebhookApp) -> None:
    from baton_webhook.handlers import Subscriptions

    subs = Subscriptions(app)
    assert await subs.for_batch() == []
    reads = 0
    list_subscriptions = app.list_subscriptions

    def counted(*args: Any) -> Any:
        nonlocal reads
        reads += 1
        return list_subscriptions(*args)

    app.list_subscriptions = counted  # type: ignore[method-assign]
    assert await subs.for_batch() == [] and reads == 0  # nothing committed since: not read
    subscribe(app)  # made by "another replica": nothing invalidates the cache
    assert len(await subs.for_batch()) == 1 and reads == 1  # the store moved: read again
    assert len(await subs.for_batch()) == 1 and reads == 1


def test_an_endpoint_from_before_sealing_still_verifies_with_its_plain_secret(
    app: WebhookApp,
) -> None:
    """Old events hold plain secrets: they are read as they are (no upcaster rewrites them)."""
    endpoint_id = uuid4()
    old = c.WebhookEndpointCreated(
        workspace_id="acme",
        aggregate_id=endpoint_id,
        aggregate_version=1,
        name="legacy",
        secrets=["whsec_plain_from_2025"],
        action={"request": "r"},
    )
    app.store.commit(Commit(events=[old]))
    found = app.live_endpoint(str(endpoint_id))
    assert found is not None
    assert app.secrets_of(found) == ["whsec_plain_from_2025"]


def test_endpoints_and_subscriptions_load_through_snapshots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BATON_AGGREGATE_SNAPSHOT_EVERY", "2")
    app = WebhookApp(MemoryEventStore("webhook"), WebhookSettings(BATON_WEBHOOK_PORT=9999))
    made = endpoint(app)
    app.store.commit(app.rotate("acme", made["id"], None, 60)[0])  # a secret valid until…
    sub = subscribe(app)
    app.store.commit(app.change_subscription("acme", sub["id"], None, "disable")[0])
    for cls, (found, load) in {
        Endpoint: (made, app.endpoint),
        Subscription: (sub, app.subscription),
    }.items():
        whole = cls.rebuild(UUID(found["id"]), app.store.load(UUID(found["id"])))
        assert state_of(load("acme", found["id"])) == state_of(whole)  # and a snapshot taken
        app.snapshots.read = 0
        assert state_of(load("acme", found["id"])) == state_of(whole)
        assert app.snapshots.read == 0  # all of it from the snapshot
