"""Signatures of every scheme: a good one passes, a bad, missing or stale one says why; two
secrets (a rotation) both verify; deliveries' egress guard takes both allowlist settings."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from baton_common.egress import EgressRefused
from baton_webhook.config import WebhookSettings
from baton_webhook.signing import (
    SignatureInvalid,
    new_secret,
    sign_github,
    sign_stripe,
    standard_headers,
    verify,
)
from standardwebhooks.webhooks import Webhook

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
BODY = json.dumps({"id": "evt_1", "n": 1}).encode()


def test_standard_signature_matches_the_reference_library() -> None:
    secret = new_secret()
    headers = standard_headers(secret, "msg_1", BODY, datetime.now(UTC))
    assert Webhook(secret).verify(BODY, headers) == {"id": "evt_1", "n": 1}
    verify("standard", [secret], BODY, headers, 300)


def test_standard_refuses_bad_missing_and_stale() -> None:
    secret = new_secret()
    good = standard_headers(secret, "msg_1", BODY, NOW)
    with pytest.raises(SignatureInvalid, match="bad signature"):
        verify("standard", [new_secret()], BODY, good, 300, NOW)
    with pytest.raises(SignatureInvalid, match="bad signature"):
        verify("standard", [secret], BODY + b" ", good, 300, NOW)
    with pytest.raises(SignatureInvalid, match="missing"):
        verify("standard", [secret], BODY, {"webhook-id": "msg_1"}, 300, NOW)
    with pytest.raises(SignatureInvalid, match=r"stale timestamp.*tolerance of 300 s"):
        verify("standard", [secret], BODY, good, 300, NOW + timedelta(minutes=6))
    verify("standard", [secret], BODY, good, 600, NOW + timedelta(minutes=6))  # configurable
    garbage = {**good, "webhook-signature": "v1,@@@ v2,xyz nonsense"}
    with pytest.raises(SignatureInvalid):
        verify("standard", [secret], BODY, garbage, 300, NOW)


def test_two_secrets_are_valid_during_a_rotation() -> None:
    old, new = new_secret(), new_secret()
    for used in (old, new):
        verify("standard", [new, old], BODY, standard_headers(used, "m", BODY, NOW), 300, NOW)
        verify("github", [new, old], BODY, {"x-hub-signature-256": sign_github(used, BODY)}, 300)


def test_github_and_stripe() -> None:
    secret = "s3cret"
    verify("github", [secret], BODY, {"x-hub-signature-256": sign_github(secret, BODY)}, 300)
    with pytest.raises(SignatureInvalid, match="X-Hub-Signature-256"):
        verify("github", [secret], BODY, {"x-hub-signature-256": "sha256=00"}, 300)
    stripe = {"stripe-signature": sign_stripe(secret, BODY, NOW)}
    verify("stripe", [secret], BODY, stripe, 300, NOW)
    with pytest.raises(SignatureInvalid, match="stale"):
        verify("stripe", [secret], BODY, stripe, 300, NOW + timedelta(hours=1))
    with pytest.raises(SignatureInvalid, match="matches a secret"):
        verify("stripe", ["other"], BODY, stripe, 300, NOW)
    verify("none", [], BODY, {}, 300)


async def test_deliveries_guard_takes_the_egress_allowlist_and_its_older_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The address rules themselves are tested with the guard (libs/common test_egress.py)."""
    with pytest.raises(EgressRefused, match="loopback"):
        await WebhookSettings().guard().check_url("http://localhost:9/x")
    monkeypatch.setenv("BATON_WEBHOOK_ALLOW", "127.0.0.1")
    await WebhookSettings().guard().check_url("http://127.0.0.1:9/x")
    monkeypatch.delenv("BATON_WEBHOOK_ALLOW")
    monkeypatch.setenv("BATON_EGRESS_ALLOW", "127.0.0.1")
    await WebhookSettings().guard().check_url("http://127.0.0.1:9/x")
    with pytest.raises(EgressRefused, match=r"10\.0\.0\.1 is a private address"):
        await WebhookSettings().guard().check_url("http://10.0.0.1/x")


def test_rate_limiter_and_delivery_ids() -> None:
    from baton_webhook.inbound import _delivery_id
    from baton_webhook.ratelimit import LocalRateLimit

    limiter = LocalRateLimit()
    assert [limiter.take("e", 2, 0.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.take("e", 2, 0.0) > 0  # the third within the minute waits
    assert limiter.take("e", 2, 31.0) == 0.0  # a token back after 30 s
    assert limiter.take("other", None, 0.0) == 0.0
    assert _delivery_id("standard", {"webhook-id": "m1"}, {}, b"") == "m1"
    assert _delivery_id("github", {"x-github-delivery": "g1"}, {}, b"") == "g1"
    assert _delivery_id("stripe", {}, {"id": "evt_1"}, b"") == "evt_1"
    assert _delivery_id("none", {"idempotency-key": "k"}, None, b"") == "k"
    assert _delivery_id("none", {}, None, b"x") == _delivery_id("none", {}, None, b"x")
