"""Secret tool inputs (secretinputs): what a schema marks secret is sealed at intake (literals
and the inputs such fields reference), opened for the call only, scrubbed from what comes back,
and shown as *** in the execution's view."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.catalogue import Catalogue, ToolSpec
from baton_common.sealing import REDACTED, KeyDestroyed, Sealer, is_sealed
from baton_common.secretinputs import (
    has_secrets,
    keep_sealed,
    open_sealed,
    scrub,
    seal_request,
    secret_paths,
)
from baton_common.views import fold

SCHEMA = {
    "type": "object",
    "properties": {
        "token": {"type": "string", "format": "password"},
        "auth": {"type": "object", "properties": {"key": {"type": "string", "writeOnly": True}}},
        "note": {"type": "string"},
    },
}
CATALOGUE = Catalogue(
    (
        ToolSpec(name="t.secret", description="d", input_schema=SCHEMA, output_schema={}),
        ToolSpec(
            name="t.plain", description="d", input_schema={"type": "object"}, output_schema={}
        ),
    )
)


def _request() -> dict[str, Any]:
    step = {
        "id": "a",
        "tool": "t.secret",
        "input": {"token": "lit-1", "auth": {"key": "Bearer ${input.k}"}, "note": "${input.n}"},
        "compensate": {"tool": "t.secret", "input": {"token": "lit-2"}},
    }
    plain = {"id": "b", "tool": "t.plain", "input": {"token": "not-a-secret-here"}}
    return {"plan": {"steps": [step, plain]}, "inputs": {"k": "in-1", "n": "visible"}}


def test_secret_paths_follow_format_password_and_write_only_into_nested_objects() -> None:
    assert secret_paths(SCHEMA) == [("token",), ("auth", "key")]
    assert secret_paths({"type": "object"}) == []


def test_literals_and_referenced_inputs_are_sealed_and_nothing_else() -> None:
    sealer = Sealer.in_memory()
    data = seal_request(_request(), CATALOGUE, sealer.seal)
    a, b = data["plan"]["steps"]
    assert is_sealed(a["input"]["token"]) and sealer.unseal(a["input"]["token"]) == "lit-1"
    assert is_sealed(a["compensate"]["input"]["token"])
    assert a["input"]["auth"]["key"] == "Bearer ${input.k}"  # a reference stays a reference
    assert is_sealed(data["inputs"]["k"]) and sealer.unseal(data["inputs"]["k"]) == "in-1"
    assert data["inputs"]["n"] == "visible"  # referenced by a field that is not secret
    assert b["input"]["token"] == "not-a-secret-here"  # another tool's schema
    again = seal_request(data, CATALOGUE, sealer.seal)  # sealing twice changes nothing
    assert again["inputs"]["k"] == data["inputs"]["k"]


def test_a_worker_opens_whole_and_embedded_values_and_scrubs_what_comes_back() -> None:
    sealer = Sealer.in_memory()
    token, key = sealer.seal("s3cret-token"), sealer.seal("k3y")
    step_input = {"token": token, "auth": {"key": f"Bearer {key}"}, "list": [token]}
    clear, secrets = open_sealed(step_input, sealer.unseal)
    assert clear == {
        "token": "s3cret-token",
        "auth": {"key": "Bearer k3y"},
        "list": ["s3cret-token"],
    }
    assert secrets == ["s3cret-token", "k3y"]
    echoed = {"said": "token s3cret-token, key k3y", "n": 1}
    assert scrub(echoed, secrets) == {"said": f"token {REDACTED}, key {REDACTED}", "n": 1}
    sealer.destroy([token])  # crypto-shredded: the step cannot open it any more
    with pytest.raises(KeyDestroyed):
        open_sealed(step_input, sealer.unseal)


def test_an_edited_gate_keeps_a_secret_left_as_shown() -> None:
    sealer = Sealer.in_memory()
    original = {"token": sealer.seal("x"), "note": "a"}
    edited = keep_sealed({"token": REDACTED, "note": "b"}, original)
    assert edited == {"token": original["token"], "note": "b"}
    assert keep_sealed({"token": "new"}, original) == {"token": "new"}


def test_the_execution_view_shows_sealed_values_as_stars() -> None:
    sealer = Sealer.in_memory()
    data = seal_request(_request(), CATALOGUE, sealer.seal)
    execution_id = uuid4()
    requested = c.ExecutionRequested(
        workspace_id="w", aggregate_id=execution_id, plan=data["plan"], inputs=data["inputs"]
    )
    view = fold([requested])
    assert view is not None
    assert view["inputs"] == {"k": REDACTED, "n": "visible"}
    assert view["plan"]["steps"][0]["input"]["token"] == REDACTED
    assert "sealed:v1:" not in str(view)


def test_sealed_text_inside_a_longer_string_is_redacted_too() -> None:
    from baton_common.sealing import redact, sealed_values

    sealer = Sealer.in_memory()
    token = sealer.seal("k3y")
    assert redact({"auth": f"Bearer {token}", "n": 1}) == {"auth": f"Bearer {REDACTED}", "n": 1}
    assert sealed_values([f"Bearer {token}"]) == [token]


def test_an_input_that_is_itself_a_reference_is_left_for_the_service_that_fills_it() -> None:
    request = _request()
    request["inputs"]["k"] = "${event.payload.token}"  # a trigger fills it when it fires
    data = seal_request(request, CATALOGUE, Sealer.in_memory().seal)
    assert data["inputs"]["k"] == "${event.payload.token}"
    assert is_sealed(data["plan"]["steps"][0]["input"]["token"])
    assert seal_request({"plan": "nightly"}, CATALOGUE, Sealer.in_memory().seal) == {
        "plan": "nightly"
    }


@pytest.mark.parametrize(
    "plan",
    [
        {"steps": 5},
        {"steps": ["x", None]},
        {"steps": [{"id": "a", "alternatives": [{"input": {}}, 3], "compensate": "no"}]},
        {"steps": [{"id": "a", "tool": 7, "input": {}}]},
    ],
)
def test_a_plan_not_checked_yet_is_looked_through_without_an_error(plan: dict[str, Any]) -> None:
    """A webhook endpoint's action is sealed before the webhook service checks its plan: a call
    without a tool was a KeyError (a 500 the fuzzer found); the check refuses it later."""
    assert has_secrets({"plan": plan}, CATALOGUE) is False
