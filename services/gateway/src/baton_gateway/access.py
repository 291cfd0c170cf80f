"""Workspaces, members, policy and API keys: recorded as events in the gateway's store.

Authenticating a key loads its aggregate (one indexed read) and checks the secret with scrypt;
a secret already checked is remembered by its SHA-256, so scrypt runs once per key and process,
while revocation and expiry are checked on every request (a revoked key stops at once here, and
within ``CACHE_S`` on other gateway replicas). Wrong secrets are throttled per key id and per
client address (``throttle.py``): past the allowance no scrypt runs at all.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.relay import Relay
from baton_common.snapshots import Snapshots
from baton_common.store import Commit, ConcurrencyConflict, MemoryEventStore, PostgresEventStore
from baton_common.workspaces import (
    DEFAULT_WORKSPACE,
    ROLES,
    TOKEN_KEY_ID,
    TOKEN_KEY_NAME,
    InstallationLimits,
    WorkspacePolicy,
    key_string,
    new_key_secret,
    split_key,
)

from baton_gateway.domain import (
    ApiKey,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    Principal,
    Unauthorized,
    Unavailable,
    Workspace,
    hash_secret,
    workspace_uuid,
)
from baton_gateway.throttle import FailedLogins

CACHE_S = 1.0


def slug(name: str) -> str:
    text = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-")
    if not text:
        raise Invalid(f"workspace name {name!r} has no letters or digits to make an id from")
    return text


class AccessApp:
    """Synchronous (call it from a thread), like the store."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        relay: Relay | None,
        limits: InstallationLimits | None = None,
    ) -> None:
        self.store, self.relay = store, relay
        self.snapshots = Snapshots(store)  # a workspace lives as long as the installation
        self.limits = limits if limits is not None else InstallationLimits()
        self.failures = FailedLogins()
        # sha256(key) -> (key id, hash of the secret it matched): a rotated secret is checked again
        self._checked: dict[str, tuple[UUID, str]] = {}
        self._keys: dict[UUID, tuple[float, ApiKey]] = {}
        self._policies: dict[str, tuple[float, WorkspacePolicy]] = {}
        self.commits = 0

    # --- authentication ---------------------------------------------------------------------------

    def known(self, key: str | None, now: datetime | None = None) -> Principal | None:
        """The key's principal when memory answers: a key loaded within ``CACHE_S``, usable, and
        its secret checked before. Pure CPU (no store, no scrypt), so the event loop may call it
        and spare the thread hop; ``None`` means: ask ``authenticate`` (from a thread)."""
        checked = self._checked.get(_digest(key)) if key else None
        hit = self._keys.get(checked[0]) if checked else None
        if checked is None or hit is None or time.monotonic() - hit[0] >= CACHE_S:
            return None
        agg = hit[1]
        if agg.hash != checked[1] or agg.unusable(now or datetime.now(UTC)):
            return None  # rotated, revoked or expired since: ``authenticate`` says why
        return agg.principal()

    def authenticate(
        self, key: str | None, now: datetime | None = None, address: str | None = None
    ) -> Principal:
        """The key's principal; ``address`` (the client's) counts failures against it too."""
        if not key:
            raise Unauthorized("missing API key: send Authorization: Bearer <key>")
        key_id, secret = _candidate(key)
        agg = self._key(key_id)
        reason = agg.unusable(now or datetime.now(UTC)) if agg else "unknown key"
        if agg is None or reason:
            raise Unauthorized(_refusal(key_id, reason or "unknown key"))
        digest = _digest(key)
        if self._checked.get(digest) != (key_id, agg.hash):
            # Only a known, usable key costs a hash: the throttles guard that step alone
            # (unknown ids are 128 random bits, not worth counting; they cost one indexed read).
            # Any string that is not a bk_ key is tried as the token: counted per address only,
            # or anyone could keep the token locked out.
            counted = None if key_id == TOKEN_KEY_ID else str(key_id)
            self.failures.check(counted, address)  # before scrypt: a 429 costs no hash
            if not agg.matches(secret):
                self.failures.failed(counted, address)
                raise Unauthorized("API key refused: unknown key")
            self._checked[digest] = (key_id, agg.hash)
        return agg.principal()

    def ensure_token(self, token: str | None) -> None:
        """Make ``token`` (``BATON_API_TOKEN``) the installation token: the default workspace's
        owner key ``TOKEN_KEY_ID``, stored as a hash like any key. The first value registers it;
        a new value replaces its secret (the old one stops working); no value revokes it; the
        same value changes nothing (a revoked token stays revoked). Every gateway start asks."""
        if token is not None and split_key(token) is not None:
            raise ValueError(
                "BATON_API_TOKEN looks like a Baton API key (bk_…): give such a key as "
                "BATON_BOOTSTRAP_KEY, and the token another value (e.g. `openssl rand -hex 32`)"
            )
        for _ in range(5):
            agg = ApiKey.rebuild(TOKEN_KEY_ID, self.store.load(TOKEN_KEY_ID))
            try:
                self._settle_token(agg, token)
            except ConcurrencyConflict:
                continue  # another gateway replica changed it at the same moment: look again
            self._keys.pop(TOKEN_KEY_ID, None)
            return
        raise Conflict("the installation token is changing too fast; try again")

    def _settle_token(self, agg: ApiKey | None, token: str | None) -> None:
        if token is None:
            if agg is not None and not agg.revoked:
                why = "BATON_API_TOKEN is no longer set"
                agg.trigger(
                    c.ApiKeyRevoked, workspace_id=DEFAULT_WORKSPACE, actor="system", reason=why
                )
                self._commit(agg.collect())
        elif agg is None:
            self._record_key(
                TOKEN_KEY_ID, token, DEFAULT_WORKSPACE, "owner", TOKEN_KEY_NAME, None, "system"
            )
        elif not agg.matches(token):
            salt = os.urandom(16)
            agg.trigger(
                c.ApiKeyRotated,
                workspace_id=DEFAULT_WORKSPACE,
                actor="system",
                salt=salt.hex(),
                hash=hash_secret(token, salt),
            )
            self._commit(agg.collect())

    # --- sessions: a reference to the key a session was opened with -------------------------------

    def reference(self, who: Principal) -> str:
        """What a dashboard session records of its principal: the key's id (and how many times
        its secret was replaced, so a rotation ends the sessions opened before), never a secret."""
        assert who.key_id is not None, "sessions are opened with a key"
        agg = self._key(who.key_id)
        rotations = agg.rotations if agg else 0
        return f"{who.key_id.hex}.{rotations}" if rotations else who.key_id.hex

    def principal_for(self, reference: str, now: datetime | None = None) -> Principal:
        """The principal of a session's key, if that key still works (revoked, expired or
        rotated since: 401)."""
        key_hex, _, rotations = reference.partition(".")
        try:
            key_id, began = UUID(hex=key_hex), int(rotations or 0)
        except ValueError:  # e.g. a session of the installation token from an older gateway
            raise Unauthorized("the session's key is no longer known; sign in again") from None
        agg = self._key(key_id)
        reason = agg.unusable(now or datetime.now(UTC)) if agg else "unknown key"
        if agg is not None and not reason and agg.rotations != began:
            reason = "its secret was replaced since"
        if agg is None or reason:
            raise Unauthorized(f"the session's API key was refused: {reason}")
        return agg.principal()

    def _key(self, key_id: UUID) -> ApiKey | None:
        hit = self._keys.get(key_id)
        if hit and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        agg = ApiKey.rebuild(key_id, self.store.load(key_id))
        if agg is not None:
            self._keys[key_id] = (time.monotonic(), agg)
        return agg

    # --- workspaces -------------------------------------------------------------------------------

    def workspace(self, workspace_id: str) -> Workspace | None:
        return self.snapshots.load(Workspace, workspace_uuid(workspace_id))

    def visible_workspace(self, workspace_id: str, who: Principal) -> Workspace:
        """The workspace if ``who`` may see it; another workspace's is a 404, never a 403."""
        found = self.workspace(workspace_id)
        if found is None or not _may_reach(who, workspace_id):
            raise NotFound(f"no workspace {workspace_id!r}")
        return found

    def ensure_workspace(self, workspace_id: str, name: str) -> None:
        agg = Workspace(workspace_uuid(workspace_id))
        agg.trigger(c.WorkspaceCreated, workspace_id=workspace_id, name=name, actor="system")
        try:
            self._commit(agg.collect())
        except ConcurrencyConflict:
            pass  # it exists

    def create_workspace(self, name: str, who: Principal) -> str:
        if not (who.workspace_id == DEFAULT_WORKSPACE and who.can("own")):
            raise _forbidden("creating workspaces", "owner (of the default workspace)", who)
        workspace_id = slug(name)
        agg = Workspace(workspace_uuid(workspace_id))
        agg.trigger(c.WorkspaceCreated, workspace_id=workspace_id, name=name, actor=who.actor)
        try:
            self._commit(agg.collect())
        except ConcurrencyConflict:
            raise Conflict(f"a workspace with id {workspace_id!r} exists already") from None
        return workspace_id

    def set_member(self, workspace_id: str, user: str, role: str, who: Principal) -> None:
        agg = self._managed(workspace_id, who, granting=role)
        self._change(agg, c.MemberSet, who, user=user, role=role)

    def remove_member(self, workspace_id: str, user: str, who: Principal) -> None:
        agg = self._managed(workspace_id, who)
        if user not in agg.members:
            raise NotFound(f"no member {user!r} in workspace {workspace_id!r}")
        if agg.members[user] == "owner" and not _may_own(who, workspace_id):
            raise _forbidden("removing an owner", "owner", who)
        self._change(agg, c.MemberRemoved, who, user=user)

    def set_policy(self, workspace_id: str, policy: WorkspacePolicy, who: Principal) -> None:
        agg = self._managed(workspace_id, who)
        self._policies.pop(workspace_id, None)
        self._change(
            agg, c.WorkspacePolicySet, who, policy=policy.model_dump(mode="json", exclude_none=True)
        )

    def known_policy(self, workspace_id: str) -> WorkspacePolicy | None:
        """The policy if remembered (within ``CACHE_S``): pure CPU, the event loop may ask."""
        hit = self._policies.get(workspace_id)
        if hit and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        return None

    def policy(self, workspace_id: str) -> WorkspacePolicy:
        """The workspace's policy (checked on every submission: remembered for ``CACHE_S``)."""
        if (known := self.known_policy(workspace_id)) is not None:
            return known
        try:
            agg = self.workspace(workspace_id)
        except Exception as exc:  # never "everything allowed" because a read failed
            raise Unavailable(
                f"cannot read the workspace's policy now ({exc}); try again"
            ) from None
        policy = WorkspacePolicy.model_validate(agg.policy) if agg else WorkspacePolicy()
        policy = self.limits.applied(policy)
        self._policies[workspace_id] = (time.monotonic(), policy)
        return policy

    def forget_workspace(self, workspace_id: str) -> None:
        """A deleted workspace: its keys and policy are not answered from memory any more."""
        gone = {
            k for k, (_, agg) in self._keys.items() if agg.principal().workspace_id == workspace_id
        }
        self._keys = {k: v for k, v in self._keys.items() if k not in gone}
        self._checked = {d: v for d, v in self._checked.items() if v[0] not in gone}
        self._policies.pop(workspace_id, None)

    def managed(self, workspace_id: str, who: Principal) -> Workspace:
        """The workspace, if ``who`` may manage it (404 if not theirs, 403 if the role is short)."""
        return self._managed(workspace_id, who)

    def _managed(self, workspace_id: str, who: Principal, granting: str | None = None) -> Workspace:
        agg = self.visible_workspace(workspace_id, who)
        if not _may_manage(who, workspace_id):
            who.require("manage", "managing a workspace")
        if granting is not None:
            if granting not in ROLES:
                raise Invalid(f"unknown role {granting!r}; one of: {', '.join(ROLES)}")
            if granting == "owner" and not _may_own(who, workspace_id):
                raise _forbidden("granting the role owner", "owner", who)
        return agg

    def _change(self, agg: Workspace, event: type[Event], who: Principal, **fields: Any) -> None:
        for _ in range(5):
            agg.trigger(event, workspace_id=agg.workspace_id, actor=who.actor, **fields)
            try:
                self._commit(agg.collect())
                return
            except ConcurrencyConflict:
                agg = self.visible_workspace(agg.workspace_id, who)
        raise Conflict(f"workspace {agg.workspace_id!r} is changing too fast; try again")

    # --- keys -------------------------------------------------------------------------------------

    def create_key(
        self,
        workspace_id: str,
        role: str,
        name: str | None,
        expires_at: datetime | None,
        who: Principal,
    ) -> tuple[UUID, str]:
        self._managed(workspace_id, who, granting=role)
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise Invalid("expires_at is in the past")
        key_id, secret = uuid4(), new_key_secret()
        name = name or f"key-{key_id.hex[:8]}"
        self._record_key(key_id, secret, workspace_id, role, name, expires_at, who.actor)
        return key_id, key_string(key_id, secret)

    def ensure_key(self, key: str, workspace_id: str, role: str, name: str) -> None:
        """Register a key made elsewhere (``baton up``'s bootstrap key), once; a revoked one
        stays revoked."""
        parts = split_key(key)
        if parts is None:
            raise ValueError("the bootstrap key is not a Baton API key")
        key_id, secret = parts
        try:
            self._record_key(key_id, secret, workspace_id, role, name, None, "system")
        except ConcurrencyConflict:
            pass

    def _record_key(
        self,
        key_id: UUID,
        secret: str,
        workspace_id: str,
        role: str,
        name: str,
        expires_at: datetime | None,
        actor: str,
    ) -> None:
        salt = os.urandom(16)
        agg = ApiKey(key_id)
        agg.trigger(
            c.ApiKeyCreated,
            workspace_id=workspace_id,
            actor=actor,
            name=name,
            role=role,
            salt=salt.hex(),
            hash=hash_secret(secret, salt),
            expires_at=expires_at,
        )
        self._commit(agg.collect())

    def revoke_key(self, key_id: UUID, reason: str | None, who: Principal) -> None:
        agg = ApiKey.rebuild(key_id, self.store.load(key_id))
        if agg is None or agg.created is None or not _may_reach(who, agg.created.workspace_id):
            raise NotFound(f"no key {key_id}")
        workspace_id = agg.created.workspace_id
        if not _may_manage(who, workspace_id):
            who.require("manage", "revoking a key")
        if agg.created.role == "owner" and not _may_own(who, workspace_id):
            raise _forbidden("revoking an owner key", "owner", who)
        if agg.revoked:
            return
        agg.trigger(c.ApiKeyRevoked, workspace_id=workspace_id, actor=who.actor, reason=reason)
        self._commit(agg.collect())
        self._keys.pop(key_id, None)

    def _commit(self, events: list[Event]) -> None:
        rows = self.store.commit(Commit(events=events))
        self.commits += 1
        if self.relay is not None:
            self.relay.committed(rows)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _candidate(key: str) -> tuple[UUID, str]:
    """The key record to check ``key`` against, and the secret to check: a ``bk_`` key names
    its own; anything else can only be the installation token, checked whole."""
    parts = split_key(key)
    if parts is not None and parts[0] != TOKEN_KEY_ID:
        return parts
    return TOKEN_KEY_ID, key


def _refusal(key_id: UUID, reason: str) -> str:
    if key_id != TOKEN_KEY_ID:
        return f"API key refused: {reason}"
    if reason == "unknown key":  # no installation token was ever set
        return "not a Baton API key (they start with 'bk_')"
    return f"API key refused: not a 'bk_' key, and the installation token cannot be used: {reason}"


def _forbidden(what: str, needed: str, who: Principal) -> Forbidden:
    return Forbidden(f"{what} needs the role {needed}; this key is {who.role!r}")


def _installation_owner(who: Principal) -> bool:
    return who.workspace_id == DEFAULT_WORKSPACE and who.can("own")


def _may_reach(who: Principal, workspace_id: str) -> bool:
    return who.workspace_id == workspace_id or _installation_owner(who)


def _may_manage(who: Principal, workspace_id: str) -> bool:
    return (who.workspace_id == workspace_id and who.can("manage")) or _installation_owner(who)


def _may_own(who: Principal, workspace_id: str) -> bool:
    return (who.workspace_id == workspace_id and who.can("own")) or _installation_owner(who)
