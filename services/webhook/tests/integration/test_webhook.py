"""The webhook service on real NATS JetStream and PostgreSQL, with real HTTP both ways: the
request/reply API, a signed delivery in and the start it asks for on the bus (once per delivery
id), an event out to a subscriber with retries, and a restart that sends what was due."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

import httpx
import pytest
from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.embedded import free_port
from baton_common.events import Event, decode
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_webhook.config import WebhookSettings
from baton_webhook.main import start_webhook
from baton_webhook.signing import standard_headers
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.integration
PLAN = {"name": "hooked", "steps": [{"id": "a", "tool": "mock.agent", "input": {"output": "x"}}]}


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Seen:
    """Every event on the stream, from the start (an ordered consumer)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def start(self, bus: Bus) -> None:
        async def on(msg: Any) -> None:
            self.events.append(decode(msg.data))

        subject = f"{bus.settings.subject_root}.>"
        self.sub = await bus.js.subscribe(subject, cb=on, ordered_consumer=True)

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]


@pytest.fixture
async def seen(bus: Bus) -> AsyncIterator[Seen]:
    s = Seen()
    await s.start(bus)
    yield s
    await s.sub.unsubscribe()


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


class Subscriber(ThreadingHTTPServer):
    """Answers 503 (with Retry-After: 0) as often as told, then 200; records each request."""

    daemon_threads = True

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.failures = failures
        self.calls: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/in"


class _Handler(BaseHTTPRequestHandler):
    server: Subscriber

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
        failing = len(self.server.calls) <= self.server.failures
        self.send_response(503 if failing else 200)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    server = Subscriber(failures=1)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


async def call(bus: Bus, op: str, workspace: str = "acme", **body: Any) -> c.WebhookReply:
    request = c.WebhookCall(op=op, workspace_id=workspace, body=body)
    subject = c.webhook_rpc_subject(bus.settings.subject_root)
    msg = await bus.request(subject, request.model_dump_json().encode(), 10)
    return c.WebhookReply.model_validate_json(msg.data)


async def test_a_signed_delivery_is_stored_once_and_asks_for_one_start(
    service: Runtime, bus: Bus, seen: Seen
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
