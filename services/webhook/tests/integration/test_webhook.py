"""The webhook service on real NATS JetStream and PostgreSQL, with real HTTP both ways: the
request/reply API, a signed delivery in and the start it asks for on the bus (once per delivery
id), an event out to a subscriber with retries, and a restart that sends what was due."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import httpx
import pytest
from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.embedded import free_port
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_common.testing import Recorder, Watch, serving, until
from baton_webhook.config import WebhookSettings
from baton_webhook.main import start_webhook
from baton_webhook.signing import standard_headers
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.integration
PLAN = {"name": "hooked", "steps": [{"id": "a", "tool": "mock.agent", "input": {"output": "x"}}]}


@pytest.fixture
async def seen(watch: Any) -> Watch:
    return await watch(">")


@pytest.fixture
def hooks() -> WebhookSettings:
    return WebhookSettings(
        BATON_WEBHOOK_PORT=free_port(),
        BATON_WEBHOOK_ALLOW="127.0.0.1",
        BATON_WEBHOOK_SENDER_INTERVAL=0.05,
    )


@pytest.fixture
async def service(settings: Settings, bus: Bus, hooks: WebhookSettings) -> AsyncIterator[Runtime]:
    runtime = await start_webhook(settings, hooks)
    yield runtime
    await runtime.close()


class Subscriber(Recorder):
    """Answers 503 (with Retry-After: 0) as often as told, then 200; records each request."""

    def __init__(self, failures: int) -> None:
        super().__init__("/in")
        self.failures = failures

    def reply(self) -> tuple[int, bytes, dict[str, str]]:
        failing = len(self.calls) <= self.failures
        return 503 if failing else 200, b"", {"Retry-After": "0"}


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    with serving(Subscriber(failures=1)) as server:
        yield server


async def call(bus: Bus, op: str, workspace: str = "acme", **body: Any) -> c.WebhookReply:
    request = c.WebhookCall(op=op, workspace_id=workspace, body=body)
    subject = c.webhook_rpc_subject(bus.settings.subject_root)
    msg = await bus.request(subject, request.model_dump_json().encode(), 10)
    return c.WebhookReply.model_validate_json(msg.data)


async def test_a_signed_delivery_is_stored_once_and_asks_for_one_start(
    service: Runtime, bus: Bus, seen: Watch
) -> None:
    made = await call(
        bus, "endpoint.create", name="gh", action={"plan": PLAN, "inputs": {"n": "${payload.n}"}}
    )
    assert made.status == 201, made.detail
    endpoint = made.body
    body = json.dumps({"n": 7}).encode()
    async with httpx.AsyncClient() as client:
        answers = []
        for _ in range(3):
            headers = standard_headers(endpoint["secret"], "msg-1", body, datetime.now(UTC))
            resp = await client.post(
                endpoint["url"],
                content=body,
                headers={**headers, "content-type": "application/json"},
            )
            answers.append(resp.status_code)
    assert answers == [202, 200, 200]

    async def published() -> bool:
        return bool(seen.of_type("intake.start_requested"))

    await until(published, "the start request on the bus")
    [start] = seen.of_type("intake.start_requested")
    assert isinstance(start, c.StartRequested)
    assert start.idempotency_key == "webhook:gh:msg-1" and start.inputs == {"n": 7}
    [received] = seen.of_type("webhook.received")
    assert received.payload == {"n": 7} and "webhook-signature" not in received.headers  # type: ignore[attr-defined]
    other = await call(bus, "endpoint.get", workspace="other", id=endpoint["id"])
    assert other.status == 404


async def test_a_nul_character_in_a_name_or_a_payload_leaves_the_lists_readable(
    service: Runtime, bus: Bus
) -> None:
    """PostgreSQL's jsonb refuses an escaped NUL; the lists read the events' JSON in SQL."""
    made = await call(bus, "endpoint.create", name="nul\x00name", action={"plan": PLAN})
    assert made.status == 201, made.detail
    endpoint = made.body
    body = json.dumps({"text": "a\x00b"}).encode()
    headers = standard_headers(endpoint["secret"], "msg-nul", body, datetime.now(UTC))
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            endpoint["url"], content=body, headers={**headers, "content-type": "application/json"}
        )
    assert resp.status_code == 202, resp.text
    listed = await call(bus, "endpoint.list")
    assert listed.status == 200, listed.detail
    assert endpoint["id"] in [e["id"] for e in listed.body["items"]]
    deliveries = await call(bus, "delivery.list")
    assert deliveries.status == 200, deliveries.detail


async def test_an_event_is_delivered_with_retries_and_one_id(
    service: Runtime, bus: Bus, subscriber: Subscriber
) -> None:
    made = await call(
        bus,
        "subscription.create",
        url=subscriber.url,
        events=["execution.succeeded"],
        retry_schedule=[0.1, 0.1],
    )
    assert made.status == 201, made.detail
    refused = await call(bus, "subscription.create", url="http://10.0.0.1/", events=["x"])
    assert refused.status == 422 and "private" in refused.detail
    execution = uuid4()
    event = c.ExecutionSucceeded(aggregate_id=execution, aggregate_version=3, workspace_id="acme")
    await bus.publish([event, event])  # a re-publish is one message, and one delivery anyway

    async def delivered() -> bool:
        items = (await call(bus, "delivery.list", subscription=made.body["id"])).body["items"]
        return bool(items) and items[0]["status"] == "succeeded"

    await until(delivered, "the delivery")
    assert len(subscriber.calls) == 2
    assert len({h["webhook-id"] for h, _ in subscriber.calls}) == 1
    for headers, body in subscriber.calls:
        assert Webhook(made.body["secret"]).verify(body, headers)["data"]["aggregate_id"] == str(
            execution
        )


async def test_a_restart_sends_what_was_due(
    settings: Settings, bus: Bus, hooks: WebhookSettings, subscriber: Subscriber
) -> None:
    """The first process stops before its sender runs (its due timer stays in the store); the
    next one sends it."""
    first = await start_webhook(settings, hooks)
    for task in first.tasks:
        if task.get_name() == "deliveries":
            task.cancel()
    made = await call(bus, "subscription.create", url=subscriber.url, events=["webhook.test"])
    test = await call(bus, "subscription.test", id=made.body["id"])
    assert test.status == 202 and test.body["status"] == "pending"
    await first.close()
    assert subscriber.calls == []
    subscriber.failures = 0
    second = await start_webhook(settings, hooks)
    try:

        async def sent() -> bool:
            got = await call(bus, "delivery.get", id=test.body["id"])
            return bool(got.body["status"] == "succeeded")

        await until(sent, "the delivery after the restart")
        assert len(subscriber.calls) == 1
    finally:
        await second.close()
