"""Saved plans (owned by the planner): named plans with immutable numbered versions, the current
version, an A/B split between versions, and the calls the gateway makes to change them.

Event types are ``saved_plan.*``, not ``plan.*``: ``plan.*`` events belong to one execution's
planning (``plan.proposed``), and views file those under the execution.
"""

from __future__ import annotations

import re
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from pydantic import BaseModel, ConfigDict, Field

from baton_common.contracts.calls import ServiceReply
from baton_common.events import Event

Json = dict[str, Any]
PLAN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# The highest version number a saved plan can have (PostgreSQL's integer): a larger one names
# no version, and is refused before it reaches the planner.
MAX_VERSION = 2**31 - 1


class _SavedPlanEvent(Event):
    """An event of the saved plan called ``name``."""

    name: str


class _VersionEvent(_SavedPlanEvent):
    """An event about one ``version`` of a saved plan."""

    version: int


class PlanVersionCreated(_VersionEvent):
    """A new immutable version of a saved plan: its content, hash, author and message."""

    TYPE = "saved_plan.version_created"
    plan: Json
    content_hash: str
    message: str | None = None
    current: bool = False  # it became the current version (the first one, or pushed with promote)


class PlanPromoted(_VersionEvent):
    """``version`` became the current one; an A/B split, if any, ended."""

    TYPE = "saved_plan.promoted"
    previous: int | None = None


class PlanRolledBack(_VersionEvent):
    """The version current before the last promotion (``previous``, current until now) is
    current again (``version``)."""

    TYPE = "saved_plan.rolled_back"
    previous: int


class PlanRoutingSet(_SavedPlanEvent):
    """Traffic split between versions by weight (an empty split: all to the current version)."""

    TYPE = "saved_plan.routing_set"
    # [{version, weight}], the weights sum to 100
    split: list[dict[str, int]] = Field(default_factory=list)
    sticky_key: str | None = None  # an input whose value keeps a caller on one version


class PlanCall(BaseModel):
    """A request to the planner over NATS request/reply (the gateway's ``/v1/plans`` routes)."""

    model_config = ConfigDict(extra="forbid")
    op: str
    workspace_id: str
    actor: str | None = None
    name: str | None = None
    body: Json = Field(default_factory=dict)


class PlanReply(ServiceReply):
    """The planner's answer: an HTTP-like status, a reason, and a body."""


def saved_plan_id(workspace_id: str, name: str) -> UUID:
    """The aggregate id of a saved plan: one per (workspace, name)."""
    return uuid5(NAMESPACE_URL, f"baton:plan:{workspace_id}:{name}")


def planner_subject(root: str) -> str:
    """The request/reply subject of the planner (queue group ``planner``)."""
    return f"{root}_rpc.planner"


def parse_plan_ref(value: Any) -> Json:
    """``"name"``, ``"name@3"`` or ``{name, version?}`` → ``{name, version?}``; a ``ValueError``
    says what is wrong. Schedules, triggers and webhooks name saved plans this way."""
    if isinstance(value, str):
        head, _, tail = value.partition("@")
        value = {"name": head, **({"version": tail} if tail else {})}
    if not isinstance(value, dict) or set(value) - {"name", "version"}:
        raise ValueError("plan_ref: a saved plan's name, 'name@version' or {name, version?}")
    name: Any = value.get("name")
    if not isinstance(name, str) or not re.match(PLAN_NAME, name):
        raise ValueError(f"plan_ref: {name!r} is not a plan name (letters, digits, . _ -)")
    if value.get("version") is None:
        return {"name": name}
    try:
        number = int(value["version"])
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise ValueError("plan_ref: the version is a number from 1")
    return {"name": name, "version": number}
