"""Signatures of the four schemes: verify inbound requests, sign outbound ones.

Every comparison is constant-time (``hmac.compare_digest``); timestamps are checked against a
tolerance before any signature, so a replayed old request is refused even when it is authentic.
Several secrets may be valid at once (a rotation): any of them verifies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook


class SignatureInvalid(Exception):
    """The request is not signed by a valid secret of the endpoint; the message says why."""


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def valid_standard_secret(secret: str) -> bool:
    try:
        raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        return False
    return 24 <= len(raw) <= 64


def verify(
    scheme: str,
    secrets_: Sequence[str],
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: float,
    now: datetime | None = None,
) -> None:
    """Raise ``SignatureInvalid`` unless ``body`` is signed per ``scheme`` by one of ``secrets_``."""
    now = now or datetime.now(UTC)
    if scheme == "none":
        return
    check = {"standard": _standard, "github": _github, "stripe": _stripe}[scheme]
    check(secrets_, body, headers, tolerance_s, now)


def _fresh(timestamp: str | None, tolerance_s: float, now: datetime) -> int:
    try:
        ts = int(str(timestamp))
    except ValueError:
        raise SignatureInvalid("the signature's timestamp is missing or not a number") from None
    age = now.timestamp() - ts
    if abs(age) > tolerance_s:
        when = "old" if age > 0 else "far in the future"
        raise SignatureInvalid(
            f"stale timestamp: the request is {abs(age):.0f} s {when}, more than the "
            f"tolerance of {tolerance_s:g} s"
        )
    return ts


def _any_matches(expected: Sequence[bytes], given: Sequence[bytes]) -> bool:
    # Compare every pair: the time taken does not tell which secret or signature was close.
    found = False
    for e in expected:
        for g in given:
            found |= hmac.compare_digest(e, g)
    return found


def _standard(
    keys: Sequence[str], body: bytes, headers: Mapping[str, str], tol: float, now: datetime
) -> None:
    msg_id, stamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    signature = headers.get("webhook-signature")
    if not (msg_id and stamp and signature):
        raise SignatureInvalid("missing webhook-id, webhook-timestamp or webhook-signature")
    ts = _fresh(stamp, tol, now)
    given = [_b64(part.split(",", 1)[1]) for part in signature.split() if part.startswith("v1,")]
    try:
        expected = [_b64(sign_standard(k, msg_id, ts, body).split(",", 1)[1]) for k in keys]
    except UnicodeDecodeError:
        raise SignatureInvalid("bad signature: the body is not UTF-8 text") from None
    if not _any_matches(expected, given):
        raise SignatureInvalid("bad signature: no v1 signature matches a secret of this endpoint")


def _github(
    keys: Sequence[str], body: bytes, headers: Mapping[str, str], _tol: float, _now: datetime
) -> None:
    # GitHub signs no timestamp: its delivery id (the dedupe) is what stops a replay.
    signature = headers.get("x-hub-signature-256", "")
    if not signature.startswith("sha256="):
        raise SignatureInvalid("missing X-Hub-Signature-256 (sha256=…)")
    expected = [sign_github(k, body).encode() for k in keys]
    if not _any_matches(expected, [signature.encode()]):
        raise SignatureInvalid("bad signature: X-Hub-Signature-256 matches no secret")


def _stripe(
    keys: Sequence[str], body: bytes, headers: Mapping[str, str], tol: float, now: datetime
) -> None:
    parts = [p.split("=", 1) for p in headers.get("stripe-signature", "").split(",") if "=" in p]
    stamp = next((v for k, v in parts if k.strip() == "t"), None)
    given = [v.strip().encode() for k, v in parts if k.strip() == "v1"]
    if stamp is None or not given:
        raise SignatureInvalid("missing Stripe-Signature (t=…,v1=…)")
    ts = _fresh(stamp, tol, now)
    expected = [_stripe_hmac(k, ts, body).encode() for k in keys]
    if not _any_matches(expected, given):
        raise SignatureInvalid("bad signature: no v1 in Stripe-Signature matches a secret")


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return b""


# --- signing (outbound, and tests) --------------------------------------------------------------


def sign_standard(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of id.timestamp.body>`` with the ``standardwebhooks`` library."""
    when = datetime.fromtimestamp(timestamp, UTC)
    return Webhook(secret).sign(msg_id, when, body.decode())


def standard_headers(secret: str, msg_id: str, body: bytes, now: datetime) -> dict[str, str]:
    ts = int(now.timestamp())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign_standard(secret, msg_id, ts, body),
    }


def sign_github(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _stripe_hmac(secret: str, ts: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def sign_stripe(secret: str, body: bytes, now: datetime) -> str:
    ts = int(now.timestamp())
    return f"t={ts},v1={_stripe_hmac(secret, ts, body)}"
