"""A webhook body nested past the JSON decoder's guard is a 400 with a reason, never a 500."""

from __future__ import annotations

from baton_webhook.inbound import _parse

JSON = {"content-type": "application/json"}


def test_a_deeply_nested_body_is_malformed_json() -> None:
    payload, problem = _parse(b"[" * 100_000 + b"]" * 100_000, JSON)
    assert payload is None and problem == "malformed JSON: nested too deeply"
    assert _parse(b'{"a": [1, {"b": 2}]}', JSON) == ({"a": [1, {"b": 2}]}, None)
