"""``GET /v1/webhooks/stream`` on the app in process, with a stand-in bus: what it subscribes to,
that the subscription always ends, and a clear 503 when the bus is away (the stream itself, on
real NATS, is tested in tests/e2e/test_webhooks.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx
from baton_common.store import MemoryEventStore
from baton_common.workspaces import DEFAULT_WORKSPACE
from baton_gateway.access import AccessApp
from baton_gateway.api import create_app
from baton_gateway.application import IntakeApp
from baton_gateway.domain import Principal
from baton_gateway.services import Services
from nats.errors import ConnectionClosedError

ROOT = Principal(DEFAULT_WORKSPACE, "owner", "root")


class Subscription:
    def __init__(self) -> None:
        self.ended = 0

    async def unsubscribe(self) -> None:
        self.ended += 1


class JetStream:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.asked: list[tuple[str, dict[str, Any]]] = []
        self.subscriptions: list[Subscription] = []

    async def subscribe(self, subject: str, **options: Any) -> Subscription:
        self.asked.append((subject, options))
        if self.refuse:
            raise ConnectionClosedError
        self.subscriptions.append(Subscription())
        return self.subscriptions[-1]


def _app(js: JetStream) -> tuple[Any, str]:
    access = AccessApp(MemoryEventStore("gateway"), None)
    access.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    _, key = access.create_key(DEFAULT_WORKSPACE, "viewer", None, None, ROOT)
    settings = SimpleNamespace(subject_root="baton", stream="BATON_EVENTS")
    bus = SimpleNamespace(js=js, settings=settings)
    services = Services(intake=IntakeApp(access.store, None), reader=None, access=access, bus=bus)  # type: ignore[arg-type]
    return create_app(services), key


async def _get_and_leave(app: Any, key: str) -> list[dict[str, Any]]:
    """A GET of the stream by a client that is gone at once, before the response could even
    start (straight from ASGI: the disconnect is the first thing the app hears, and sending
    the response's head never finishes): the stream's generator never runs."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/webhooks/stream",
        "raw_path": b"/v1/webhooks/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        await asyncio.Event().wait()  # a client that reads nothing more

    await app(scope, receive, send)
    return sent


async def test_it_follows_only_the_callers_workspace_and_always_ends_its_subscription() -> None:
    js = JetStream()
    app, key = _app(js)
    sent = await _get_and_leave(app, key)
    assert sent[0]["status"] == 200
    [(subject, options)] = js.asked
    assert subject == f"baton.{DEFAULT_WORKSPACE}.webhook.>"
    assert options["ordered_consumer"] is True and options["stream"] == "BATON_EVENTS"
    assert js.subscriptions[0].ended == 1  # though the stream itself never ran


async def test_without_the_bus_it_says_so() -> None:
    app, key = _app(JetStream(refuse=True))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        resp = await client.get("/v1/webhooks/stream", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 503 and "event bus" in resp.json()["detail"]
