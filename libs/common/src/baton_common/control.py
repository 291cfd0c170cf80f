"""Control messages signed by the installation: a reader acts only on what Baton itself wrote.

The tool catalogue decides what every process plans with and what every worker runs. The bus
already lets only the executor publish it (``busauth``); the signature is the second lock, for a
message that arrives some other way (a replayed dead letter, a stream restored from elsewhere, a
leaked admin key): an HMAC-SHA256 over the event's canonical JSON with the installation's control
key (``BATON_CONTROL_KEY_FILE``; ``baton up`` and ``baton nats-keys`` make it, mode 0600).

The other control messages (requests outside the event stream: decisions, calls to the planner,
scheduler, webhook and calendar services, tool refreshes, dead-letter replays, the gateway's
direct hand-over of plans) carry the same key's HMAC in a ``Baton-Signature`` header, over the
subject, a timestamp and the body: a seed that may publish the subject is not enough to forge
one, a signed one cannot be moved to another subject, and a recorded one stops working after
``MAX_AGE_S``. Domain events are not signed: see docs/security.md ("The bus").
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from baton_common.settings import Settings, auth_folder

E = TypeVar("E")
KEY_FILE = "control.key"
HEADER = "Baton-Signature"
MAX_AGE_S = 300.0  # far above a request's 10 s timeout; clocks of a deployment agree closer
log = logging.getLogger(__name__)


def ensure_key(folder: Path) -> Path:
    """``folder/control.key``: 32 random bytes (hex), made once, mode 0600."""
    path = folder / KEY_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32) + "\n")
    return path


def control_key(settings: Settings) -> bytes | None:
    """The configured key, else the local engine's (beside its bus keys), else None."""
    path = settings.control_key_file or auth_folder(settings.data_dir) / KEY_FILE
    try:
        return bytes.fromhex(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _digest(key: bytes, event: Any) -> str:
    body = event.model_dump(mode="json", exclude={"signature"})
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(key, canonical, hashlib.sha256).hexdigest()


def sign(event: E, key: bytes | None) -> E:
    """``event`` with its ``signature`` set (unchanged without a key)."""
    if key is None:
        return event
    return event.model_copy(update={"signature": _digest(key, event)})  # type: ignore[attr-defined]


def refused(event: Any, key: bytes | None) -> str | None:
    """Why a reader must ignore ``event``, or None. Without a key nothing is checked (unit
    tests, or a deployment that configured none: ``baton up`` always has one)."""
    if key is None:
        return None
    given = getattr(event, "signature", "")
    if not given:
        return "unsigned"
    if not hmac.compare_digest(given, _digest(key, event)):
        return "bad signature"
    return None


# --- control messages (requests and hand-overs outside the event stream) -----------------------


def _message_digest(key: bytes, subject: str, stamp: str, data: bytes) -> str:
    signed = b"baton-control\n" + subject.encode() + b"\n" + stamp.encode() + b"\n" + data
    return hmac.new(key, signed, hashlib.sha256).hexdigest()


def signed_headers(
    key: bytes | None, subject: str, data: bytes, headers: Mapping[str, str] | None = None
) -> dict[str, str] | None:
    """``headers`` plus the message's signature (unchanged without a key)."""
    if key is None:
        return dict(headers) if headers else None
    stamp = f"{time.time():.3f}"
    digest = _message_digest(key, subject, stamp, data)
    return {**(headers or {}), HEADER: f"{stamp}.{digest}"}


def message_refused(
    key: bytes | None, subject: str, data: bytes, headers: Mapping[str, str] | None
) -> str | None:
    """Why a server must ignore this control message, or None (nothing is checked without a
    key, as for the catalogue)."""
    if key is None:
        return None
    given = (headers or {}).get(HEADER, "")
    stamp, _, digest = given.rpartition(".")
    if not given or not stamp:
        return "unsigned"
    if not hmac.compare_digest(digest, _message_digest(key, subject, stamp, data)):
        return "bad signature"
    try:
        age = time.time() - float(stamp)
    except ValueError:
        return "bad signature"
    if abs(age) > MAX_AGE_S:
        return f"signed {age:.0f} s ago, outside the {MAX_AGE_S:.0f} s window"
    return None
