"""Signatures of every scheme: a good one passes, a bad, missing or stale one says why; two
secrets (a rotation) both verify; the guard refuses private addresses unless allowed."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta

import pytest
from baton_webhook.guard import AddressRefused, check_url, parse_allow, refused_why
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


def test_guard_refuses_private_addresses_unless_allowed() -> None:
    allow = parse_allow("127.0.0.1, 10.1.0.0/16")
    for address, why in (
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("127.0.0.2", "loopback"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("0.0.0.0", "unspecified"),
    ):
        found = refused_why(ipaddress.ip_address(address), allow)
        assert found is not None and why in found, (address, found)
    assert refused_why(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert refused_why(ipaddress.ip_address("10.1.2.3"), allow) is None
    assert refused_why(ipaddress.ip_address("93.184.215.14"), []) is None


async def test_check_url_resolves_names_first() -> None:
    with pytest.raises(AddressRefused, match="loopback"):
        await check_url("http://localhost:9/x", [])
    with pytest.raises(AddressRefused, match="http"):
        await check_url("ftp://example.com/", [])
    await check_url("http://127.0.0.1:9/x", parse_allow("127.0.0.1"))


def test_rate_limiter_and_delivery_ids() -> None:
    from baton_webhook.inbound import RateLimiter, _delivery_id

    limiter = RateLimiter()
    assert [limiter.retry_after("e", 2, 0.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert limiter.retry_after("e", 2, 0.0) > 0  # the third within the minute waits
    assert limiter.retry_after("e", 2, 31.0) == 0.0  # a token back after 30 s
    assert limiter.retry_after("other", None, 0.0) == 0.0
    assert _delivery_id("standard", {"webhook-id": "m1"}, {}, b"") == "m1"
    assert _delivery_id("github", {"x-github-delivery": "g1"}, {}, b"") == "g1"
    assert _delivery_id("stripe", {}, {"id": "evt_1"}, b"") == "evt_1"
    assert _delivery_id("none", {"idempotency-key": "k"}, None, b"") == "k"
    assert _delivery_id("none", {}, None, b"x") == _delivery_id("none", {}, None, b"x")


async def test_a_request_is_pinned_to_the_checked_address() -> None:
    from baton_webhook.guard import pin

    allow = parse_allow("127.0.0.1, ::1")
    plain = await pin("http://localhost:8080/in?x=1", allow)
    assert plain.url in ("http://127.0.0.1:8080/in?x=1", "http://[::1]:8080/in?x=1")
    assert plain.host == "localhost:8080" and plain.extensions == {}
    tls = await pin("https://user:pw@localhost/in", allow)
    assert tls.host == "localhost" and tls.extensions == {"sni_hostname": "localhost"}
    assert tls.url.startswith(("https://127.0.0.1/in", "https://[::1]/in"))
