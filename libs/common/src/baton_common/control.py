"""Control events signed by the installation: a reader acts only on what Baton itself wrote.

The tool catalogue decides what every process plans with and what every worker runs. The bus
already lets only the executor publish it (``busauth``); the signature is the second lock, for a
message that arrives some other way (a replayed dead letter, a stream restored from elsewhere, a
leaked admin key): an HMAC-SHA256 over the event's canonical JSON with the installation's control
key (``BATON_CONTROL_KEY_FILE``; ``baton up`` and ``baton nats-keys`` make it, mode 0600).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, TypeVar

from baton_common.settings import Settings, auth_folder

E = TypeVar("E")
KEY_FILE = "control.key"


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
