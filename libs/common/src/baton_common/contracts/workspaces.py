"""Workspaces, members and API keys (owned by the gateway)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from baton_common.events import Event

Json = dict[str, Any]


# --- workspaces, members and API keys (owned by the gateway) ---------------------------------------


class WorkspaceCreated(Event):
    """A workspace: a team's own executions, keys, policy and quotas."""

    TYPE = "workspace.created"
    name: str


class _MemberEvent(Event):
    """An event of one member (``user``) of a workspace."""

    user: str


class MemberSet(_MemberEvent):
    """A person was given a role in a workspace (or a new one)."""

    TYPE = "workspace.member_set"
    role: str


class MemberRemoved(_MemberEvent):
    """A person no longer belongs to a workspace."""

    TYPE = "workspace.member_removed"


class ApiKeyCreated(Event):
    """An API key of a workspace; only its salted scrypt hash is kept."""

    TYPE = "workspace.key_created"
    name: str
    role: str
    salt: str
    hash: str
    expires_at: datetime | None = None


class ApiKeyRotated(Event):
    """An API key's secret was replaced (the installation token set to a new value): the old
    secret stops working, and the key works again if it was revoked."""

    TYPE = "workspace.key_rotated"
    salt: str
    hash: str


class ApiKeyRevoked(Event):
    """An API key stops working at once."""

    TYPE = "workspace.key_revoked"
    reason: str | None = None


class WorkspacePolicySet(Event):
    """A workspace's tool allow/deny lists and quotas (a ``WorkspacePolicy``), replaced whole."""

    TYPE = "workspace.policy_set"
    policy: Json
