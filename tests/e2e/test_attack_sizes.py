"""Attack regression (issue 25, sizes), on the engine as processes.

Found: an execution with 1.2 MB of ``inputs`` was accepted (202) and stayed ``requested`` for
ever, while the gateway's relay retried ``MaxPayloadError`` twice a second and everything behind
that event waited. Now a body over the installation's limit gets 413, a field over its own limit
422 naming it, and nothing is stored for either; an event the bus still refuses is parked, the
relay goes on, and its execution fails with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from baton_common.limits import MiB

from tests.e2e.conftest import Engine
from tests.e2e.test_webhooks import make_endpoint, send, signed

pytestmark = pytest.mark.e2e

STEP = {"id": "a", "tool": "text.template", "input": {"template": "hello {n}", "values": {"n": 1}}}
PLAN = {"steps": [STEP]}
SMALL_BUS = 128 * 1024  # this engine's nats max_payload; the field limits stay at their defaults


def _submit(engine: Engine, body: dict[str, Any]) -> httpx.Response:
    return engine.http.post(f"{engine.url}/v1/executions", json=body)


def _run_many(engine: Engine, count: int) -> None:
    """``count`` executions, each of which must succeed."""
    ids = []
    for n in range(count):
        step = {**STEP, "input": {"template": "run {n}", "values": {"n": n}}}
        accepted = _submit(engine, {"plan": {"steps": [step]}})
        assert accepted.status_code == 202, accepted.text
        ids.append(accepted.json()["id"])
    for execution_id in ids:
        assert engine.wait(execution_id)["status"] == "succeeded"


def test_a_body_over_the_limit_gets_413_before_anything_is_stored(engine: Engine) -> None:
    filler = b"x" * (3 * MiB)
    body = b'{"plan": {"steps": []}, "inputs": {"blob": "' + filler + b'"}}'
    headers = {"content-type": "application/json"}
    answer = engine.http.post(f"{engine.url}/v1/executions", content=body, headers=headers)
    assert answer.status_code == 413
    assert answer.json()["detail"] == "the request body is 3 MiB, the limit is 2 MiB"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it is read
        yield b'{"plan": {"steps": []}, "inputs": {"blob": "'
        for _ in range(48):
            yield b"x" * 65536
        yield b'"}}'

    answer = engine.http.post(f"{engine.url}/v1/executions", content=chunked(), headers=headers)
    assert answer.status_code == 413
    assert "the limit is 2 MiB" in answer.json()["detail"]


def test_inputs_over_their_limit_get_422_naming_them_and_the_next_100_run(engine: Engine) -> None:
    key = {"idempotency_key": "sizes-big-inputs"}
    answer = _submit(engine, {"plan": PLAN, "inputs": {"blob": "x" * 1_200_000}, **key})
    assert answer.status_code == 422
    assert answer.json() == {"detail": "inputs is 1.1 MiB, the limit is 256 KiB", "field": "inputs"}
    # Nothing was stored under that key: another request may take it (else 409, or "existing").
    taken = _submit(engine, {"plan": PLAN, **key})
    assert taken.status_code == 202 and taken.json()["created"] is True
    _run_many(engine, 100)


def test_the_webhook_receiver_caps_a_body_at_the_inputs_limit_whatever_its_endpoint_allows(
    engine: Engine,
) -> None:
    endpoint, _ = make_endpoint(engine, max_body_bytes=16 * MiB)  # the most an endpoint may ask
    body = b'{"user": {"name": "' + b"x" * (1 * MiB) + b'"}}'
    answer = send(endpoint, body, signed("standard", endpoint["secret"], body, "big-1"))
    assert answer.status_code == 413
    assert answer.json()["detail"] == "the body is larger than 262144 bytes"
    body = b"x" * (3 * MiB)  # over the installation's request limit too: the middleware's answer
    answer = send(endpoint, body, signed("standard", endpoint["secret"], body, "big-2"))
    assert answer.status_code == 413
    assert answer.json()["detail"] == "the request body is 3 MiB, the limit is 2 MiB"


def test_an_event_the_bus_refuses_is_parked_its_execution_fails_and_the_rest_run(
    own_engine: Any,
) -> None:
    engine: Engine = own_engine({"BATON_NATS_MAX_PAYLOAD": str(SMALL_BUS)})
    # Inputs of 200 KB: under their limit (256 KiB) and the store's (1000 KiB), over this bus.
    request = _submit(engine, {"plan": PLAN, "inputs": {"blob": "x" * 200_000}})
    assert request.status_code == 202
    # A step whose output is 200 KB: under the step output limit (512 KiB), over this bus.
    # (a small input: 200 placeholders of a 1,000-character value; format widths are bounded)
    wide = {"id": "wide", "tool": "text.template", "input": {"template": "{v}" * 200}}
    wide["input"]["values"] = {"v": "x" * 1000}
    output = _submit(engine, {"plan": {"steps": [wide]}})
    assert output.status_code == 202

    for accepted in (request, output):
        view = engine.wait(accepted.json()["id"], timeout=60)
        assert view["status"] == "failed", view
        assert "larger than the bus accepts (128 KiB, NATS max_payload)" in view["error"]

    listed = engine.http.get(f"{engine.url}/v1/deadletters").json()["items"]
    parked = [m for m in listed if m["consumer"] == "relay"]
    types = sorted(m["subject"].rsplit(".", 2)[-2] + "." + m["subject"].rsplit(".", 1)[-1]
                   for m in parked)  # fmt: skip
    assert "execution.requested" in types and "execution.step_succeeded" in types
    assert all("larger than the bus accepts" in m["reason"] for m in parked)
    again = engine.http.post(f"{engine.url}/v1/deadletters/{parked[0]['seq']}/replay")
    assert again.status_code == 422 and "cannot be sent again" in again.json()["detail"]
    assert engine.http.post(f"{engine.url}/v1/deadletters/0/replay").status_code == 422

    cli = engine.cli("deadletters")
    assert cli.returncode == 0, cli.stderr
    assert "relay" in cli.stdout and "larger than the bus accepts" in cli.stdout

    _run_many(engine, 20)  # nothing waits behind the parked events
