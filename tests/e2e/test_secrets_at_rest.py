"""Secrets at rest on the engine as processes (issue 26): webhook secrets (inbound endpoints,
outbound subscriptions) and a CalDAV password (a real Radicale server) are sealed before they
become events. Triggers on their events see ``***``; a full ``pg_dump``, every message of every
JetStream stream, every log file and the audit trail (also after a projection rebuild) hold none
of them. After ``baton secrets rotate`` a signed webhook is still accepted, a subscriber still
gets verifiable signatures and the calendar is still read; a deleted endpoint's secret can no
longer be opened from the store.

Secret tool inputs too: a tool whose input schema marks fields ``format: password`` and
``writeOnly`` (an agent file calling a test server) gets the clear values, a literal and one given
as an execution input by reference, while the database, the streams, the logs, the audit, the
execution's view, its history, its SSE stream and its replay hold neither; a tool that echoes them
back has them scrubbed from its output."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import nats
import pytest
from baton_calendar.testing import PASSWORD, USER, Radicale
from baton_common.sealing import (
    REDACTED,
    KeyDestroyed,
    KeyRing,
    PostgresKeyStore,
    Sealer,
    is_sealed,
    key_id_of,
)
from baton_common.testing import LocalHandler, Recorder, serving, wait_until
from baton_webhook.signing import standard_headers
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.e2e

PG_BIN = Path("/usr/lib/postgresql/15/bin")
QUICK = {"steps": [{"id": "a", "tool": "mock.agent", "input": {"task": "tick"}}]}


class ToolServer(ThreadingHTTPServer):
    """What the secret-taking agent file calls: records each JSON body it gets, answers with a
    digest of the secrets and, to test scrubbing, the secrets themselves."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ToolHandler)
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/tool"


class _ToolHandler(LocalHandler):
    server: ToolServer

    def do_POST(self) -> None:
        body = json.loads(self.body())
        self.server.bodies.append(body)
        seen = f"{body['token']}|{body['auth']['key']}"
        answer = json.dumps(
            {"digest": hashlib.sha256(seen.encode()).hexdigest(), "echo": f"got {seen}"}
        ).encode()
        self.answer(200, answer, {"Content-Type": "application/json"})


SECRET_TOOL = """
name: secret.echo
description: Call a test server with secrets.
input_schema:
  type: object
  properties:
    token: {{type: string, format: password}}
    auth:
      type: object
      properties:
        key: {{type: string, writeOnly: true}}
    note: {{type: string}}
  required: [token, auth]
output_schema: {{type: object}}
implementation:
  http: {{url: "{url}", method: POST}}
"""


@pytest.fixture(scope="module")
def tool_server() -> Iterator[ToolServer]:
    with serving(ToolServer()) as server:
        yield server


@pytest.fixture(scope="module")
def sealed_engine(module_engine: Any, tool_server: ToolServer, tmp_path_factory: Any) -> Engine:
    """This file's engine: its own, since a test rotates its installation key; with an agents
    folder holding the secret-taking tool."""
    agents = tmp_path_factory.mktemp("agents")
    (agents / "secret.yaml").write_text(SECRET_TOOL.format(url=tool_server.url))
    return module_engine({"BATON_AGENTS_DIR": str(agents)})


@pytest.fixture
def subscriber() -> Iterator[Recorder]:
    """An outbound webhook's receiver: records every request's headers and body."""
    with serving(Recorder("/hook")) as server:
        yield server


@pytest.fixture
def radicale() -> Iterator[Radicale]:
    server = Radicale().start()
    yield server
    server.stop()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def post(engine: Engine, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = engine.http.post(f"{engine.url}{path}", json=body)
    assert resp.status_code in (200, 201), resp.text
    return dict(resp.json())


def endpoint(engine: Engine, secret: str) -> dict[str, Any]:
    name = f"sealed-{uuid.uuid4().hex[:8]}"
    action = {"plan": {"name": name, **QUICK}}
    return post(
        engine, "/v1/webhooks/endpoints", {"name": name, "secret": secret, "action": action}
    )


def send(engine: Engine, made: dict[str, Any], secret: str) -> httpx.Response:
    body = json.dumps({"n": uuid.uuid4().hex}).encode()
    headers = standard_headers(secret, f"msg_{uuid.uuid4().hex}", body, datetime.now(UTC))
    headers["content-type"] = "application/json"
    return httpx.post(made["url"], content=body, headers=headers, timeout=30)


def triggered(engine: Engine, trigger_id: str) -> dict[str, Any]:
    def found() -> Any:
        resp = engine.http.get(f"{engine.url}/v1/executions", params={"trigger": trigger_id})
        items = resp.json().get("items", []) if resp.status_code == 200 else []
        return items[0] if items else None

    return engine.wait(wait_until(found, 60, f"execution of trigger {trigger_id}")["id"])


def verified_deliveries(subscriber: Recorder, secret: str) -> int:
    ok = 0
    for headers, body in list(subscriber.calls):
        Webhook(secret).verify(body, headers)  # raises on a bad signature
        ok += 1
    return ok


# --- where a secret could hide --------------------------------------------------------------------


def pg_dump(url: str) -> bytes:
    done = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--dbname", url], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


async def _stream_messages(url: str | dict[str, Any]) -> list[tuple[bytes, bytes]]:
    """(data, headers as JSON) of every message of every stream."""
    nc = await (nats.connect(**url) if isinstance(url, dict) else nats.connect(url))
    js = nc.jetstream()
    found: list[tuple[bytes, bytes]] = []
    try:
        for info in await js.streams_info():
            state = info.state
            if not state.messages:
                continue
            for seq in range(max(1, state.first_seq), state.last_seq + 1):
                try:
                    msg = await js.get_msg(info.config.name or "", seq)
                except nats.js.errors.NotFoundError:
                    continue
                found.append((msg.data or b"", json.dumps(msg.headers or {}).encode()))
    finally:
        await nc.close()
    return found


def stream_messages(engine: Engine) -> list[tuple[bytes, bytes]]:
    where = engine.nats() if hasattr(engine, "nats") else engine.runtime()["nats_url"]
    return asyncio.run(_stream_messages(where))


def log_files(engine: Engine) -> bytes:
    return b"".join(p.read_bytes() for p in (engine.data_dir / "logs").rglob("*") if p.is_file())


def audit_rows(engine: Engine) -> list[tuple[str, Any]]:
    import psycopg

    with psycopg.connect(engine.runtime()["database_url"]) as conn:
        return list(conn.execute("SELECT action, detail FROM audit").fetchall())


def needles(*values: str) -> list[bytes]:
    """Each secret as text and as the hex PostgreSQL prints bytea in; a webhook secret's key
    bytes (base64) too."""
    out = []
    for v in values:
        forms = [v, v.removeprefix("whsec_")]
        out += [f.encode() for f in forms] + [f.encode().hex().encode() for f in forms]
    return out


def assert_nowhere(haystack: bytes, where: str, found_in: list[bytes]) -> None:
    leaked = [n.decode()[:12] for n in found_in if n in haystack]
    assert not leaked, f"{where} holds a secret in clear (starting {leaked})"


def copying_trigger(engine: Engine, name: str, event_type: str, field: str) -> str:
    """A trigger that tries to copy the ``field`` of every ``event_type`` event into a run's
    inputs (what a secret there would leak): its id."""
    trigger = {
        "name": name,
        "filter": {"type": event_type},
        "plan": QUICK,
        "inputs": {"copied": f"${{event.payload.{field}}}"},
    }
    return str(post(engine, "/v1/triggers", trigger)["id"])


# --- the test -------------------------------------------------------------------------------------


def test_secrets_are_sealed_everywhere_survive_rotation_and_are_shredded(
    sealed_engine: Engine, radicale: Radicale, subscriber: Recorder
) -> None:
    engine = sealed_engine
    copy_hook = copying_trigger(engine, "copy-hook", "webhook.endpoint_created", "secrets")
    copy_cal = copying_trigger(engine, "copy-cal", "calendar.created", "password")

    inbound, outbound, doomed = new_secret(), new_secret(), new_secret()
    hook = endpoint(engine, inbound)
    gone = endpoint(engine, doomed)
    post(
        engine,
        "/v1/webhooks/subscriptions",
        {"url": subscriber.url, "events": ["execution.succeeded"], "secret": outbound},
    )
    cal_name = f"cal-{uuid.uuid4().hex[:8]}"
    cal_url = radicale.make_calendar(cal_name)
    post(
        engine,
        "/v1/calendars",
        {"name": cal_name, "url": cal_url, "username": USER, "password": PASSWORD},
    )
    doomed_cal = post(
        engine,
        "/v1/calendars",
        {"name": f"{cal_name}-gone", "url": cal_url, "username": USER, "password": PASSWORD},
    )

    # A trigger on their events copies only ***.
    assert triggered(engine, copy_cal)["inputs"]["copied"] == REDACTED
    hook_run = triggered(engine, copy_hook)["inputs"]["copied"]
    assert hook_run == [REDACTED], hook_run

    # The secrets work where they are used.
    assert send(engine, hook, inbound).status_code in (200, 202)
    assert send(engine, hook, new_secret()).status_code == 401
    wait_until(lambda: verified_deliveries(subscriber, outbound), 60, "signed delivery")
    events = engine.http.get(f"{engine.url}/v1/calendars/{cal_name}/ics")  # read at Radicale
    assert events.status_code == 200, events.text

    # Crypto-shredding: the deleted endpoint's and calendar's data keys are gone.
    assert engine.http.delete(f"{engine.url}/v1/webhooks/endpoints/{gone['id']}").status_code == 204
    deleted = engine.http.delete(f"{engine.url}/v1/calendars/{doomed_cal['name']}")
    assert deleted.status_code == 204, deleted.text

    # Rotation: a new installation key, every data key re-wrapped, the old key file removed.
    key_file = Path(engine.runtime()["secrets_key_file"])
    before = key_file.read_bytes()
    rotated = engine.cli("secrets", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert key_file.read_bytes() != before and not key_file.with_name("secrets.key.old").exists()
    assert send(engine, hook, inbound).status_code in (200, 202)
    calls = len(subscriber.calls)
    wait_until(lambda: len(subscriber.calls) > calls, 60, "delivery after the rotation")
    assert verified_deliveries(subscriber, outbound) == len(subscriber.calls)
    events = engine.http.get(f"{engine.url}/v1/calendars/{cal_name}/ics")  # read at Radicale
    assert events.status_code == 200, events.text

    # The stream holds only sealed values; the store opens the live one, not the deleted one.
    messages = stream_messages(engine)
    sealed = _sealed_secrets(messages, {hook["id"], gone["id"], doomed_cal["id"]})
    db_url = engine.runtime()["database_url"]
    sealer = Sealer(PostgresKeyStore(db_url), KeyRing({"BATON_SECRETS_KEY_FILE": str(key_file)}))
    assert sealer.unseal(sealed[hook["id"]]) == inbound
    with pytest.raises(KeyDestroyed):
        sealer.unseal(sealed[gone["id"]])
    with pytest.raises(KeyDestroyed):
        sealer.unseal(sealed[doomed_cal["id"]])
    for shredded in (gone["id"], doomed_cal["id"]):
        row = PostgresKeyStore(db_url).get(key_id_of(sealed[shredded]))
        assert row is not None and row.wrapped is None

    # Nowhere in clear: the database, the streams, the logs, the audit (also once rebuilt).
    rebuilt = engine.cli("projections", "rebuild", timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr
    secret_needles = needles(inbound, outbound, doomed, PASSWORD)
    dump = pg_dump(db_url)
    assert b"sealed:v1:".hex().encode() in dump or b"sealed:v1:" in dump  # the search sees events
    assert_nowhere(dump, "pg_dump", secret_needles)
    assert_nowhere(b"\n".join(d + h for d, h in messages), "JetStream", secret_needles)
    assert_nowhere(log_files(engine), "the logs", secret_needles)
    audit = audit_rows(engine)
    assert_nowhere(json.dumps(audit).encode(), "the audit", secret_needles)
    created = [d for action, d in audit if action == "calendar.created"]
    assert created and all(d.get("password") in (REDACTED, None) for d in created)
    assert "sealed:v1:" not in json.dumps(audit)


def _sealed_secrets(messages: list[tuple[bytes, bytes]], ids: set[str]) -> dict[str, str]:
    """The sealed secret of each endpoint or calendar, from the message that created it."""
    found: dict[str, str] = {}
    for data, _headers in messages:
        try:
            event = json.loads(data)
        except ValueError:
            continue
        if event.get("aggregate_id") not in ids:
            continue
        if event.get("type") == "webhook.endpoint_created":
            [found[event["aggregate_id"]]] = event["secrets"]
        elif event.get("type") == "calendar.created":
            found[event["aggregate_id"]] = event["password"]
    assert set(found) == ids, found
    assert all(is_sealed(v) for v in found.values()), "a secret travels in clear"
    return found


# --- secret tool inputs -------------------------------------------------------------------------


def sse_text(engine: Engine, execution_id: str) -> str:
    """The execution's whole SSE stream (it ends with the execution)."""
    url = f"{engine.url}/v1/executions/{execution_id}/stream"
    with engine.http.stream("GET", url, timeout=60) as resp:
        assert resp.status_code == 200
        return "".join(resp.iter_text())


def test_secret_tool_inputs_reach_the_tool_and_nothing_else(
    sealed_engine: Engine, tool_server: ToolServer
) -> None:
    engine = sealed_engine
    literal, given = f"lit-{secrets.token_hex(12)}", f"inp-{secrets.token_hex(12)}"
    wait_until(
        lambda: "secret.echo" in engine.http.get(f"{engine.url}/v1/tools").text,
        60,
        "the secret-taking tool in the catalogue",
    )
    step = {"token": literal, "auth": {"key": "Bearer ${input.key}"}, "note": "plain"}
    plan = {"steps": [{"id": "call", "tool": "secret.echo", "input": step}]}
    resp = engine.http.post(
        f"{engine.url}/v1/executions", json={"plan": plan, "inputs": {"key": given}}
    )
    assert resp.status_code == 202, resp.text
    made = resp.json()
    view = engine.wait(made["id"])
    assert view["status"] == "succeeded", view

    # The tool got the clear values (the server saw them; the digest is of them).
    [body] = [b for b in tool_server.bodies if b.get("note") == "plain" and literal in b["token"]]
    assert body["token"] == literal and body["auth"]["key"] == f"Bearer {given}"
    output = view["steps"]["call"]["output"]
    seen = f"{literal}|Bearer {given}"
    assert output["digest"] == hashlib.sha256(seen.encode()).hexdigest()
    assert output["echo"] == f"got {REDACTED}|Bearer {REDACTED}"  # echoed back: scrubbed

    # What people read shows ***.
    assert view["inputs"]["key"] == REDACTED
    assert view["plan"]["steps"][0]["input"]["token"] == REDACTED
    events = engine.http.get(f"{engine.url}/v1/executions/{made['id']}/events").text
    at = engine.http.get(f"{engine.url}/v1/executions/{made['id']}/replay", params={"at": 3})
    replayed = engine.cli("replay", made["id"])
    assert replayed.returncode == 0, replayed.stderr
    shown = {
        "the view": json.dumps(view),
        "the history": events,
        "the SSE stream": sse_text(engine, made["id"]),
        "the replay at 3": at.text,
        "baton replay": replayed.stdout + replayed.stderr,
    }
    for where, text in shown.items():
        assert literal not in text and given not in text, f"{where} shows a secret"
        assert "sealed:v1:" not in text, f"{where} shows a sealed value"

    # A saved plan's literal is sealed before the planner stores it, and opened for its run.
    saved_secret, name = f"sav-{secrets.token_hex(12)}", f"sealed-{uuid.uuid4().hex[:8]}"
    saved_step = {"token": saved_secret, "auth": {"key": "k"}, "note": "saved"}
    saved_plan = {"steps": [{"id": "call", "tool": "secret.echo", "input": saved_step}]}
    pushed = post(engine, f"/v1/plans/{name}/versions", {"plan": saved_plan, "promote": True})
    version = engine.http.get(f"{engine.url}/v1/plans/{name}/versions/{pushed['version']}")
    assert saved_secret not in version.text and REDACTED in version.text, version.text
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan_ref": {"name": name}})
    assert resp.status_code == 202, resp.text
    assert engine.wait(resp.json()["id"])["status"] == "succeeded"
    assert [b["token"] for b in tool_server.bodies if b.get("note") == "saved"] == [saved_secret]
    # Run by name with an input its secret field references: the gateway seals that input
    # (the planner names it when the plan_ref is checked), so the request's event holds no clear.
    by_name = f"byn-{secrets.token_hex(12)}"
    ref_step = {"token": "${input.key}", "auth": {"key": "k"}, "note": "by-name"}
    ref_plan = {"steps": [{"id": "call", "tool": "secret.echo", "input": ref_step}]}
    pushed = post(engine, f"/v1/plans/{name}/versions", {"plan": ref_plan, "promote": True})
    body = {"plan_ref": {"name": name, "version": pushed["version"]}, "inputs": {"key": by_name}}
    resp = engine.http.post(f"{engine.url}/v1/executions", json=body)
    assert resp.status_code == 202, resp.text
    ran = engine.wait(resp.json()["id"])
    assert ran["status"] == "succeeded" and ran["inputs"]["key"] == REDACTED, ran
    assert [b["token"] for b in tool_server.bodies if b.get("note") == "by-name"] == [by_name]

    # Stored and sent only sealed: the request's event carries ciphertext the store opens.
    messages = stream_messages(engine)
    requested = [
        json.loads(d)
        for d, _ in messages
        if b'"execution.requested"' in d and made["id"].encode() in d
    ]
    assert requested and is_sealed(requested[0]["inputs"]["key"])
    db_url = engine.runtime()["database_url"]
    key_file = engine.runtime()["secrets_key_file"]
    sealer = Sealer(PostgresKeyStore(db_url), KeyRing({"BATON_SECRETS_KEY_FILE": key_file}))
    assert sealer.unseal(requested[0]["inputs"]["key"]) == given
    found = needles(literal, given, saved_secret, by_name)
    assert_nowhere(pg_dump(db_url), "pg_dump", found)
    assert_nowhere(b"\n".join(d + h for d, h in messages), "JetStream", found)
    assert_nowhere(log_files(engine), "the logs", found)
    assert_nowhere(json.dumps(audit_rows(engine), default=str).encode(), "the audit", found)

    # Rotation re-wraps these data keys too: after it the same ciphertext still opens.
    rotated = engine.cli("secrets", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    after = Sealer(PostgresKeyStore(db_url), KeyRing({"BATON_SECRETS_KEY_FILE": key_file}))
    assert after.unseal(requested[0]["plan"]["steps"][0]["input"]["token"]) == literal
