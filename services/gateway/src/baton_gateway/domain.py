"""The gateway's one aggregate: an execution request and the commands people send about it.

Recording them here (instead of only publishing) makes intake durable and idempotent for as
long as the store lives: an idempotency key maps to a fixed execution id, and the store's
uniqueness of (id, version 1) decides, once and for all, which request won.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.workspaces import PERMISSIONS, roles_with


class GatewayError(Exception):
    """Base of the gateway's errors; each maps to an HTTP status."""

    status = 400


class NotFound(GatewayError):
    """No such execution."""

    status = 404


class Conflict(GatewayError):
    """The request contradicts what was recorded before."""

    status = 409


class Unauthorized(GatewayError):
    """No key, an unknown, revoked or expired key."""

    status = 401


class Forbidden(GatewayError):
    """A valid key whose role may not do this."""

    status = 403


class Invalid(GatewayError):
    """A well-formed request that asks for something impossible."""

    status = 422


class Unavailable(GatewayError):
    """Something the answer depends on cannot be read now; nothing was allowed or changed."""

    status = 503


class Busy(GatewayError):
    """Too much of one kind of work at once; the same request may succeed a moment later."""

    status = 503


# --- workspaces, members and keys -----------------------------------------------------------------


def workspace_uuid(workspace_id: str) -> UUID:
    """The aggregate id of a workspace: fixed by its id, so creating it twice conflicts."""
    return uuid5(NAMESPACE_URL, f"baton:workspace:{workspace_id}")


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key of one workspace, with one role."""

    workspace_id: str
    role: str
    name: str
    key_id: UUID | None = None

    @property
    def actor(self) -> str:
        return f"{self.name} ({self.role})"

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())

    def require(self, permission: str, what: str) -> None:
        if not self.can(permission):
            needed = " or ".join(roles_with(permission))
            raise Forbidden(f"{what} needs the role {needed}; this key is {self.role!r}")


class Workspace(Aggregate):
    """A team's space: its name, members with roles, and its policy."""

    workspace_id: str = ""
    name: str = ""
    members: dict[str, str]
    policy: dict[str, Any]

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.members = {}
        self.policy = {}

    def on_created(self, e: c.WorkspaceCreated) -> None:
        self.workspace_id, self.name = e.workspace_id, e.name

    def on_member_set(self, e: c.MemberSet) -> None:
        self.members[e.user] = e.role

    def on_member_removed(self, e: c.MemberRemoved) -> None:
        self.members.pop(e.user, None)

    def on_policy_set(self, e: c.WorkspacePolicySet) -> None:
        self.policy = dict(e.policy)


_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


def hash_secret(secret: str, salt: bytes) -> str:
    """scrypt (memory-hard): a leaked store does not give the keys away."""
    return hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT).hex()  # type: ignore[arg-type]


class ApiKey(Aggregate):
    """One API key: its workspace, role and name, the hash of its secret, and whether it works."""

    created: c.ApiKeyCreated | None = None
    revoked = False
    salt = ""
    hash = ""
    rotations = 0  # how many times its secret was replaced: sessions name the one they began with

    def on_key_created(self, e: c.ApiKeyCreated) -> None:
        self.created = e
        self.salt, self.hash = e.salt, e.hash

    def on_key_rotated(self, e: c.ApiKeyRotated) -> None:
        self.salt, self.hash = e.salt, e.hash
        self.rotations += 1
        self.revoked = False  # a new secret is a new credential; the revoked one stays refused

    def on_key_revoked(self, _e: c.ApiKeyRevoked) -> None:
        self.revoked = True

    def matches(self, secret: str) -> bool:
        assert self.created is not None
        given = hash_secret(secret, bytes.fromhex(self.salt))
        return hmac.compare_digest(given, self.hash)

    def unusable(self, now: datetime) -> str | None:
        """Why the key cannot be used now, or None."""
        if self.created is None:
            return "unknown key"
        if self.revoked:
            return "this key was revoked"
        if self.created.expires_at is not None and self.created.expires_at <= now:
            return f"this key expired at {self.created.expires_at.isoformat()}"
        return None

    def principal(self) -> Principal:
        assert self.created is not None
        e = self.created
        return Principal(e.workspace_id, e.role, e.name, self.id)


class ExecutionRequest(Aggregate):
    """What was asked for, and the pause/resume/cancel commands sent since."""

    request: c.ExecutionRequested | None = None
    cancel_requested = False

    def on_requested(self, e: c.ExecutionRequested) -> None:
        self.request = e

    def on_cancel_requested(self, _e: Any) -> None:
        self.cancel_requested = True

    def same_as(self, other: c.ExecutionRequested) -> bool:
        mine = self.request
        return mine is not None and (mine.request, mine.plan, mine.inputs, mine.plan_ref) == (
            other.request,
            other.plan,
            other.inputs,
            other.plan_ref,
        )
