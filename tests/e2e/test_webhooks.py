"""Webhooks on the engine as processes, with real HTTP both ways: signed deliveries of each
scheme start one execution each; a delivery sent three times starts one; bad signatures, stale
timestamps, oversize and malformed bodies are refused and store nothing; a subscriber that fails
twice gets three attempts with one webhook-id and a verifiable signature; an unreachable one
ends in the dead letter with its log; kill -9 of the webhook service after a receipt loses
nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import pytest
from baton_common.embedded import free_port
from baton_webhook.signing import sign_github, sign_stripe, standard_headers
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.e2e

# Subscribers in these tests listen on 127.0.0.1: the egress guard must allow it (conftest's
# engine sets BATON_EGRESS_ALLOW; nothing here touches this process's environment, which the
# unit tests collected beside it share).


class Subscriber(ThreadingHTTPServer):
    """The outside world receiving webhooks: answers with the statuses it is given, in order
    (then 200), and records every request's headers and body."""

    daemon_threads = True

    def __init__(self, statuses: list[int] | None = None, redirect: str | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.statuses = list(statuses or [])
        self.redirect = redirect
        self.calls: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"

    def received(self) -> list[tuple[dict[str, str], bytes]]:
        with self.lock:
            return list(self.calls)


class _Handler(BaseHTTPRequestHandler):
    server: Subscriber

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        if self.server.redirect:
            self.send_response(302)
            self.send_header("Location", self.server.redirect)
        else:
            self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}" if status < 300 else b"no")

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    server = Subscriber([500, 500])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def plan(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "steps": [{"id": "a", "tool": "mock.agent", "input": {"output": "${input.who}"}}],
    }


def make_endpoint(
    engine: Engine, scheme: str = "standard", **extra: Any
) -> tuple[dict[str, Any], str]:
    """An endpoint starting a plan of its own name; returns (endpoint, plan name)."""
    name = f"{scheme}-{uuid.uuid4().hex[:8]}"
    action = {
        "plan": plan(name),
        "inputs": {"who": "${payload.user.name}", "event": "${headers.x-event}"},
    }
    body = {"name": name, "scheme": scheme, "action": action, **extra}
    resp = engine.http.post(f"{engine.url}/v1/webhooks/endpoints", json=body)
    assert resp.status_code == 201, resp.text
    return resp.json(), name


def signed(
    scheme: str, secret: str, body: bytes, delivery: str, at: datetime | None = None
) -> dict[str, str]:
    at = at or datetime.now(UTC)
    headers = {"content-type": "application/json", "x-event": "push"}
    if scheme == "standard":
        return {**headers, **standard_headers(secret, delivery, body, at)}
    if scheme == "github":
        return {
            **headers,
            "x-hub-signature-256": sign_github(secret, body),
            "x-github-delivery": delivery,
        }
    if scheme == "stripe":
        return {**headers, "stripe-signature": sign_stripe(secret, body, at)}
    return {**headers, "idempotency-key": delivery}


def send(endpoint: dict[str, Any], body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(endpoint["url"], content=body, headers=headers, timeout=30)


def executions_of(engine: Engine, plan_name: str) -> list[dict[str, Any]]:
    resp = engine.http.get(f"{engine.url}/v1/executions", params={"plan": plan_name})
    return list(resp.json()["items"])


def eventually(get: Any, ok: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    value = get()
    while not ok(value):
        assert time.monotonic() < deadline, f"not reached within {timeout}s: {value}"
        time.sleep(0.1)
        value = get()
    return value


def payload_for(scheme: str, who: str) -> bytes:
    body: dict[str, Any] = {"user": {"name": who}}
    if scheme == "stripe":
        body["id"] = f"evt_{uuid.uuid4().hex}"  # Stripe's event id is the delivery id
    return json.dumps(body).encode()


@pytest.mark.parametrize("scheme", ["standard", "github", "stripe", "none"])
def test_a_signed_webhook_starts_exactly_one_execution(engine: Engine, scheme: str) -> None:
    extra = {"allow_unsigned": True} if scheme == "none" else {}
    endpoint, name = make_endpoint(engine, scheme, **extra)
    assert endpoint["url"].startswith(engine.runtime()["webhook"] + "/hooks/")
    body = payload_for(scheme, "Ada")
    resp = send(endpoint, body, signed(scheme, endpoint["secret"] or "", body, f"d-{uuid.uuid4()}"))
    assert resp.status_code == 202, resp.text
    view = engine.wait(resp.json()["execution_id"])
    assert view["status"] == "succeeded" and view["inputs"] == {"who": "Ada", "event": "push"}
    assert len(executions_of(engine, name)) == 1


def test_the_same_delivery_three_times_starts_one(engine: Engine) -> None:
    endpoint, name = make_endpoint(engine)
    body = payload_for("standard", "Grace")
    answers = []
    for _ in range(3):  # a sender's retries: same id, signed afresh each time
        resp = send(endpoint, body, signed("standard", endpoint["secret"], body, "delivery-1"))
        answers.append((resp.status_code, resp.json()["duplicate"]))
    assert answers == [(202, False), (200, True), (200, True)]
    engine.wait(resp.json()["execution_id"])
    assert len(executions_of(engine, name)) == 1
    # a duplicate stays one even as the gateway records the start: ask again later
    assert (
        send(endpoint, body, signed("standard", endpoint["secret"], body, "delivery-1")).status_code
        == 200
    )
    assert len(executions_of(engine, name)) == 1


def test_bad_signature_stale_timestamp_and_oversize_are_refused_and_store_nothing(
    engine: Engine,
) -> None:
    endpoint, name = make_endpoint(engine, max_body_bytes=2048)
    secret, body = endpoint["secret"], payload_for("standard", "Eve")
    bad = signed("standard", "whsec_" + "QUJD" * 8, body, "d-1")
    resp = send(endpoint, body, bad)
    assert resp.status_code == 401 and "bad signature" in resp.json()["detail"]
    stale = signed("standard", secret, body, "d-1", datetime.now(UTC) - timedelta(minutes=6))
    resp = send(endpoint, body, stale)
    assert resp.status_code == 401 and "stale timestamp" in resp.json()["detail"]
    missing = {"content-type": "application/json"}
    assert send(endpoint, body, missing).status_code == 401
    big = json.dumps({"user": {"name": "x" * 4096}}).encode()
    assert send(endpoint, big, signed("standard", secret, big, "d-1")).status_code == 413
    broken = b'{"user": '
    resp = send(endpoint, broken, signed("standard", secret, broken, "d-1"))
    assert resp.status_code == 400 and "malformed JSON" in resp.json()["detail"]
    text = {**signed("standard", secret, body, "d-1"), "content-type": "text/plain"}
    assert send(endpoint, body, text).status_code == 415
    unknown = {**endpoint, "url": endpoint["url"].rsplit("/", 1)[0] + f"/{uuid.uuid4()}"}
    assert send(unknown, body, signed("standard", secret, body, "d-1")).status_code == 404
    # nothing was stored under d-1: the first good delivery of it is new, and starts one
    resp = send(endpoint, body, signed("standard", secret, body, "d-1"))
    assert resp.status_code == 202 and resp.json()["duplicate"] is False
    engine.wait(resp.json()["execution_id"])
    assert len(executions_of(engine, name)) == 1
    port = engine.runtime()["health_ports"]["webhook"]
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    refused = next(line for line in metrics.splitlines() if "webhooks_refused_total" in line)
    assert float(refused.split()[-1]) >= 7


def test_rotation_rate_limit_and_bad_endpoints(engine: Engine) -> None:
    endpoint, _ = make_endpoint(engine, rate_per_minute=2)
    rotated = engine.http.post(f"{endpoint_api(engine, endpoint)}/rotate", json={})
    assert rotated.status_code == 200 and rotated.json()["secret"] != endpoint["secret"]
    answers = []
    for secret in (endpoint["secret"], rotated.json()["secret"], rotated.json()["secret"]):
        body = payload_for("standard", "Rot")  # the old and the new secret both work for now
        resp = send(endpoint, body, signed("standard", secret, body, f"r-{uuid.uuid4()}"))
        answers.append(resp.status_code)
    assert answers == [202, 202, 429] and int(resp.headers["retry-after"]) >= 1
    ref = {"name": "by-ref", "action": {"plan_ref": "deploy@x"}}
    resp = engine.http.post(f"{engine.url}/v1/webhooks/endpoints", json=ref)
    assert resp.status_code == 422 and "plan_ref" in resp.json()["detail"]
    unsigned = {"name": "open", "scheme": "none", "action": {"request": "say hi"}}
    resp = engine.http.post(f"{engine.url}/v1/webhooks/endpoints", json=unsigned)
    assert resp.status_code == 422 and "allow_unsigned" in resp.json()["detail"]
    for url in ("http://169.254.169.254/latest", "http://10.0.0.7/x", "http://127.0.0.2:9/x"):
        resp = engine.http.post(
            f"{engine.url}/v1/webhooks/subscriptions", json={"url": url, "events": ["execution.*"]}
        )
        assert resp.status_code == 422, (url, resp.text)
    assert engine.http.delete(endpoint_api(engine, endpoint)).status_code == 204
    body = payload_for("standard", "Gone")
    assert (
        send(endpoint, body, signed("standard", rotated.json()["secret"], body, "g")).status_code
        == 404
    )


@pytest.fixture
def second_webhook(engine: Engine) -> Iterator[str]:
    """Another replica of the webhook service, a process of its own on this engine's bus and
    database, with its own listener: yields that listener's address."""
    port = free_port()
    env = {
        "BATON_WEBHOOK_PORT": str(port),
        "BATON_HEALTH_PORT": str(free_port()),
        "BATON_SECRETS_KEY_FILE": str(engine.data_dir / "secrets.key"),  # opens the secrets
    }
    with engine.replica("webhook", **env) as proc:
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: _answers(f"{url}/healthz") or proc.poll() is not None, bool, 90)
        log = (engine.data_dir / "logs" / "webhook-2.log").read_text()
        assert proc.poll() is None, log[-2000:]
        yield url


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_two_replicas_count_one_rate_limit(engine: Engine, second_webhook: str) -> None:
    """Signed deliveries alternating between two webhook processes: the endpoint's rate (2 a
    minute) is counted once for both, so the third delivery is refused whichever replica takes
    it (each replica counting its own let four through)."""
    endpoint, name = make_endpoint(engine, rate_per_minute=2)
    replicas = [endpoint["url"], f"{second_webhook}/hooks/{endpoint['id']}"]
    answers = []
    for i in range(6):
        body = payload_for("standard", f"R{i}")
        headers = signed("standard", endpoint["secret"], body, f"rate-{uuid.uuid4()}")
        resp = httpx.post(replicas[i % 2], content=body, headers=headers, timeout=30)
        answers.append(resp.status_code)
    assert answers == [202, 202, 429, 429, 429, 429], answers
    assert int(resp.headers["retry-after"]) >= 1
    eventually(lambda: executions_of(engine, name), lambda found: len(found) == 2)


def endpoint_api(engine: Engine, endpoint: dict[str, Any]) -> str:
    return f"{engine.url}/v1/webhooks/endpoints/{endpoint['id']}"


def subscribe(engine: Engine, url: str, name: str, **extra: Any) -> dict[str, Any]:
    body = {
        "url": url,
        "events": ["execution.succeeded"],
        "plan": name,
        "retry_schedule": [0.2, 0.2],
        **extra,
    }
    resp = engine.http.post(f"{engine.url}/v1/webhooks/subscriptions", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def deliveries(engine: Engine, sub: dict[str, Any]) -> list[dict[str, Any]]:
    resp = engine.http.get(
        f"{engine.url}/v1/webhooks/deliveries", params={"subscription": sub["id"]}
    )
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


def test_a_subscriber_failing_twice_gets_three_attempts_with_one_id(
    engine: Engine, subscriber: Subscriber
) -> None:
    name = f"out-{uuid.uuid4().hex[:8]}"
    sub = subscribe(engine, subscriber.url, name)
    eid = engine.http.post(
        f"{engine.url}/v1/executions", json={"plan": plan(name), "inputs": {"who": "Ada"}}
    ).json()["id"]
    engine.wait(eid)
    [done] = eventually(
        lambda: deliveries(engine, sub), lambda d: d and d[0]["status"] == "succeeded"
    )
    calls = subscriber.received()
    assert len(calls) == 3 and [a["status_code"] for a in done["attempts"]] == [500, 500, 200]
    assert {h["webhook-id"] for h, _ in calls} == {done["message_id"]}
    for headers, body in calls:  # each attempt is signed afresh, verifiably
        data = Webhook(sub["secret"]).verify(body, headers)
        assert data["type"] == "execution.succeeded" and data["data"]["aggregate_id"] == eid
    assert all(a["latency_ms"] >= 0 and "response" in a for a in done["attempts"])
    shown = engine.cli("webhooks", "deliveries", "show", done["id"])
    assert shown.returncode == 0 and "succeeded" in shown.stdout and shown.stdout.count("#") == 3


def test_an_unreachable_subscriber_ends_in_the_dead_letter_with_its_log(engine: Engine) -> None:
    name = f"dead-{uuid.uuid4().hex[:8]}"
    sub = subscribe(engine, f"http://127.0.0.1:{free_port()}/gone", name, disable_after=1)
    eid = engine.http.post(
        f"{engine.url}/v1/executions", json={"plan": plan(name), "inputs": {"who": "x"}}
    ).json()["id"]
    engine.wait(eid)
    [dead] = eventually(lambda: deliveries(engine, sub), lambda d: d and d[0]["status"] == "dead")
    assert len(dead["attempts"]) == 3 and all(
        a["status_code"] is None and a["error"] for a in dead["attempts"]
    )
    assert "3 attempts failed" in dead["reason"]
    view = engine.http.get(f"{engine.url}/v1/webhooks/subscriptions/{sub['id']}").json()
    assert view["status"] == "disabled" and "in a row" in view["disabled_reason"]
    listed = engine.cli("webhooks", "deliveries", "--status", "dead")
    assert listed.returncode == 0 and dead["id"] in listed.stdout
    # enabled again and redelivered: a new round, the same webhook-id, dead again
    assert (
        engine.http.post(f"{engine.url}/v1/webhooks/subscriptions/{sub['id']}/enable").status_code
        == 200
    )
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    resp = engine.http.post(
        f"{engine.url}/v1/webhooks/deliveries/redeliver",
        json={"since": since, "subscription": sub["id"]},
    )
    assert resp.status_code == 202 and resp.json()["redelivered"] == [dead["id"]]
    again = eventually(
        lambda: deliveries(engine, sub)[0],
        lambda d: d["status"] == "dead" and len(d["attempts"]) == 6,
    )
    assert again["message_id"] == dead["message_id"]


def test_redirects_to_private_addresses_are_refused(engine: Engine) -> None:
    server = Subscriber(redirect="http://169.254.169.254/latest/meta-data")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sub = subscribe(engine, server.url, "any", retry_schedule=[])
        test = engine.cli("webhooks", "test", sub["id"])
        assert test.returncode == 1 and "refused" in test.stdout and "metadata" in test.stdout, (
            test.stdout
        )
        assert len(server.received()) == 1
    finally:
        server.shutdown()


def test_cli_creates_signs_and_tests(engine: Engine, subscriber: Subscriber, tmp_path: Any) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    (tmp_path / "plan.json").write_text(json.dumps(plan(name)))
    made = engine.cli(
        "webhooks",
        "endpoints",
        "create",
        name,
        "--plan",
        str(tmp_path / "plan.json"),
        "--input",
        "who=${payload.user.name}",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    endpoint = json.loads(made.stdout)
    body = json.dumps({"user": {"name": "Cli"}})
    signed_out = engine.cli("webhooks", "sign", "--secret", endpoint["secret"], "--payload", body)
    headers = dict(line.split(": ", 1) for line in signed_out.stdout.splitlines())
    resp = httpx.post(endpoint["url"], content=body.encode(), headers=headers)
    assert resp.status_code == 202, resp.text
    assert engine.wait(resp.json()["execution_id"])["inputs"] == {"who": "Cli"}
    listed = engine.cli("webhooks", "endpoints")
    assert listed.returncode == 0 and name in listed.stdout
    sub = subscribe(engine, subscriber.url, name, retry_schedule=[0.1, 0.1])
    tested = engine.cli("webhooks", "test", sub["id"])
    assert tested.returncode == 0 and "succeeded" in tested.stdout and tested.stdout.count("#") == 3
    assert json.loads(subscriber.received()[-1][1])["type"] == "webhook.test"


def test_another_workspace_sees_none_of_it(engine: Engine, subscriber: Subscriber) -> None:
    endpoint, _ = make_endpoint(engine)
    sub = subscribe(engine, subscriber.url, "x")
    ws = engine.http.post(
        f"{engine.url}/v1/workspaces", json={"name": f"hooks {uuid.uuid4().hex[:6]}"}
    ).json()["id"]
    key = engine.http.post(f"{engine.url}/v1/workspaces/{ws}/keys", json={"role": "owner"}).json()[
        "key"
    ]
    other = httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert other.get(endpoint_api(engine, endpoint)).status_code == 404
    assert other.get(f"{engine.url}/v1/webhooks/subscriptions/{sub['id']}").status_code == 404
    assert other.get(f"{engine.url}/v1/webhooks/endpoints").json()["items"] == []
    assert other.get(f"{engine.url}/v1/webhooks/subscriptions").json()["items"] == []
    viewer = engine.http.post(
        f"{engine.url}/v1/workspaces/default/keys", json={"role": "viewer"}
    ).json()["key"]
    resp = httpx.post(
        f"{engine.url}/v1/webhooks/endpoints",
        headers={"Authorization": f"Bearer {viewer}"},
        json={"name": "nope", "action": {"request": "x"}},
    )
    assert resp.status_code == 403


class Follow(threading.Thread):
    """Reads ``GET /v1/webhooks/stream`` until ``done(events)``; ``opened`` once it answered
    (the server subscribes before it answers)."""

    def __init__(self, client: httpx.Client, url: str, done: Any) -> None:
        super().__init__(daemon=True)
        self.client, self.url, self.done = client, url, done
        self.opened = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.raw = ""
        self.status = 0

    def run(self) -> None:
        with self.client.stream("GET", self.url, timeout=httpx.Timeout(60)) as resp:
            self.status = resp.status_code
            self.opened.set()
            for line in resp.iter_lines():  # a ping comes every 10 s at least
                self.raw += line + "\n"
                if line.startswith("data:"):
                    self.events.append(json.loads(line[5:]))
                if self.events and self.done(self.events):
                    return


def test_the_live_stream_is_the_workspace_s_own_and_carries_no_secret(engine: Engine) -> None:
    server = Subscriber()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ws = engine.http.post(
        f"{engine.url}/v1/workspaces", json={"name": f"live {uuid.uuid4().hex[:6]}"}
    ).json()["id"]
    key = engine.http.post(f"{engine.url}/v1/workspaces/{ws}/keys", json={"role": "viewer"})
    other = httpx.Client(headers={"Authorization": f"Bearer {key.json()['key']}"}, timeout=30)
    mine: set[str] = set()
    theirs: set[str] = set()
    url = f"{engine.url}/v1/webhooks/stream"
    ours = Follow(
        engine.http,
        url,
        lambda es: any(e["type"] == "webhook.delivery_succeeded" and e["id"] in mine for e in es),
    )
    b = Follow(other, url, lambda es: es[-1]["id"] in theirs)
    for follow in (ours, b):
        follow.start()
        assert follow.opened.wait(30) and follow.status == 200
    made = make_endpoint(engine)[0]
    sub = subscribe(engine, server.url, "x", events=["webhook.test"])
    delivery = engine.http.post(f"{engine.url}/v1/webhooks/subscriptions/{sub['id']}/test")
    mine |= {made["id"], sub["id"], delivery.json()["id"]}
    ours.join(60)
    # B's own change comes after all of ours on the bus: B's stream reads up to it, and shows
    # nothing of ours on the way (a viewer key: its workspace's owner made the endpoint)
    owner = engine.http.post(f"{engine.url}/v1/workspaces/{ws}/keys", json={"role": "owner"})
    b_owner = httpx.Client(headers={"Authorization": f"Bearer {owner.json()['key']}"})
    theirs.add(b_owner.post(f"{engine.url}/v1/webhooks/endpoints", json={
        "name": "b-live", "action": {"request": "x"}}).json()["id"])  # fmt: skip
    b.join(60)
    server.shutdown()
    assert not ours.is_alive() and not b.is_alive()
    assert [e["type"] for e in b.events] == ["webhook.endpoint_created"]
    # (the default workspace's stream may also carry retries of earlier tests' deliveries)
    types = [e["type"] for e in ours.events if e["id"] in mine]
    assert types[:3] == [
        "webhook.endpoint_created",
        "webhook.subscription_created",
        "webhook.delivery_scheduled",
    ]
    assert all(set(e) == {"type", "id", "occurred_at"} for e in ours.events + b.events)
    assert "whsec_" not in ours.raw + b.raw and made["secret"] not in ours.raw


def test_kill_9_of_the_webhook_service_after_receipts_loses_nothing(engine: Engine) -> None:
    """Receipts are committed with the starts they ask for before the 2xx: with the gateway
    frozen (nothing recorded yet) and the webhook service killed right after answering, every
    accepted delivery still starts exactly one execution, and repeats stay duplicates."""
    endpoint, name = make_endpoint(engine)
    pids = engine.runtime()["pids"]
    bodies = [payload_for("standard", f"k{i}") for i in range(5)]
    os.kill(pids["gateway"], signal.SIGSTOP)
    try:
        accepted = []
        for i, body in enumerate(bodies):
            resp = send(endpoint, body, signed("standard", endpoint["secret"], body, f"kill-{i}"))
            assert resp.status_code == 202, resp.text
            accepted.append(resp.json()["execution_id"])
        os.kill(pids["webhook"], signal.SIGKILL)
    finally:
        os.kill(pids["gateway"], signal.SIGCONT)
    for eid in accepted:
        assert engine.wait(eid, timeout=90)["status"] == "succeeded"
    eventually(lambda: engine.runtime()["pids"]["webhook"], lambda pid: pid != pids["webhook"], 90)
    for i, body in enumerate(bodies):  # the restarted service remembers every receipt
        resp = eventually(
            lambda b=body, n=i: _try_send(
                endpoint, b, signed("standard", endpoint["secret"], b, f"kill-{n}")
            ),
            lambda r: r is not None,
        )
        assert resp.status_code == 200 and resp.json()["duplicate"] is True
    assert len(executions_of(engine, name)) == len(bodies)


def _try_send(
    endpoint: dict[str, Any], body: bytes, headers: dict[str, str]
) -> httpx.Response | None:
    try:
        return send(endpoint, body, headers)
    except httpx.HTTPError:
        return None  # the supervisor is restarting the service


CHROMIUM = os.environ.get("BATON_CHROMIUM") or "/usr/bin/chromium"
SHOTS = os.environ.get("BATON_SCREENSHOTS")  # `make screenshots`: docs/


def test_dashboard_webhooks_page(engine: Engine) -> None:
    """Create an endpoint and a subscription from the page, send a test, redeliver it."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    server = Subscriber()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        page.set_default_timeout(30_000)
        page.clock.install()
        try:
            page.goto(engine.signin_url("/webhooks"))
            page.locator("summary", has_text="New endpoint").click()
            name = f"ui-{uuid.uuid4().hex[:6]}"
            page.fill("#endpoint-form input[name=name]", name)
            page.click("#endpoint-form button[type=submit]")
            assert page.locator("[data-role=secret]").first.inner_text().count("whsec_") == 1
            assert page.locator("#endpoints tr", has_text=name).count() == 1
            page.locator("summary", has_text="New subscription").click()
            page.fill("#subscription-form input[name=url]", server.url)
            page.fill("#subscription-form input[name=events]", "webhook.test")
            page.click("#subscription-form button[type=submit]")
            row = page.locator("#subscriptions tr", has_text=server.url)
            row.wait_for()
            # The page's clock stops: no timer of it fires from here, so a delivery that shows
            # up came in on its live stream, not from a poll.
            page.clock.pause_at(datetime.now(UTC) + timedelta(minutes=10))
            sub_id = row.get_attribute("data-subscription")
            sent = engine.http.post(f"{engine.url}/v1/webhooks/subscriptions/{sub_id}/test")
            assert sent.status_code == 202, sent.text
            done = f"#deliveries tr[data-delivery='{sent.json()['id']}']"
            page.locator(f"{done}[data-status=succeeded]").wait_for()
            page.clock.resume()
            row.get_by_role("button", name="Send test").click()
            succeeded = page.locator("#deliveries tr[data-status=succeeded]", has_text=server.url)
            succeeded.nth(1).wait_for()
            page.locator(done).get_by_role("button", name="Redeliver").click()
            eventually(lambda: len(server.received()), lambda n: n == 3)
            if SHOTS:
                page.screenshot(path=f"{SHOTS}/dashboard-webhooks.png", full_page=True)
            page.fill("#subscription-form input[name=url]", "http://169.254.169.254/x")
            page.click("#subscription-form button[type=submit]")
            page.wait_for_selector("#subscription-error:not([hidden])")
            assert "metadata" in page.locator("#subscription-error").inner_text()
        finally:
            browser.close()
            server.shutdown()
