"""API key strings (``bk_<id>_<secret>``): made, written and read apart from the workspace models,
so that ``baton up``'s supervisor, which mints the first owner key, imports none of them."""

from __future__ import annotations

import secrets
from uuid import UUID, uuid4

KEY_PREFIX = "bk_"


# The installation token (``BATON_API_TOKEN``) is an API key of the default workspace with this
# fixed id: the gateway registers its hash at start, so it is listed, revoked and rotated like any.
TOKEN_KEY_ID = UUID("6261746f-6e00-4000-8000-0000746f6b65")
TOKEN_KEY_NAME = "api-token"


def new_key_secret() -> str:
    return secrets.token_urlsafe(32)


def key_string(key_id: UUID, secret: str) -> str:
    """What the caller keeps: the key's id (to find it) and its secret (to prove it)."""
    return f"{KEY_PREFIX}{key_id.hex}_{secret}"


def split_key(key: str) -> tuple[UUID, str] | None:
    if not key.startswith(KEY_PREFIX) or len(key) < len(KEY_PREFIX) + 34:
        return None
    head, secret = key[len(KEY_PREFIX) : len(KEY_PREFIX) + 32], key[len(KEY_PREFIX) + 33 :]
    try:
        return UUID(hex=head), secret
    except ValueError:
        return None


def mint_key() -> str:
    """A new key string (its id is random); register it before use."""
    return key_string(uuid4(), new_key_secret())
