"""Saved plans: one aggregate per (workspace, name), with immutable numbered versions, the current
version, the promotions that led to it (for rollback) and an optional A/B split.

No I/O here: the planner's call server loads, calls and commits (``library.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.aggregate import Aggregate


class SavedPlanError(Exception):
    """Base of the saved plans' domain errors; ``status`` is the HTTP-like answer."""

    status = 400


class NotFound(SavedPlanError):
    status = 404


class Refused(SavedPlanError):
    """A change the plan does not take in its state (409)."""

    status = 409


class Invalid(SavedPlanError):
    status = 422


def content_hash(plan: dict[str, Any]) -> str:
    """The same content, whatever the key order, has the same hash."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def bucket(*parts: str) -> int:
    """A stable number in 0…99 for a key (the same on every replica and after restarts, unlike
    Python's ``hash``)."""
    digest = hashlib.sha256(":".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass(frozen=True)
class Version:
    number: int
    plan: dict[str, Any]
    content_hash: str
    author: str | None
    message: str | None
    created_at: str

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.number,
            "content_hash": self.content_hash,
            "author": self.author,
            "message": self.message,
            "created_at": self.created_at,
            "steps": len(self.plan.get("steps", [])),
        }


@dataclass(frozen=True)
class Choice:
    """The exact version an execution runs, and why that one."""

    version: int
    chosen_by: str  # pinned | current | split

    def ref(self, name: str) -> dict[str, Any]:
        return {"name": name, "version": self.version, "chosen_by": self.chosen_by}


class SavedPlan(Aggregate):
    """A named plan of one workspace (aggregate id = ``saved_plan_id(workspace, name)``)."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)
        self.workspace_id = ""
        self.name = ""
        self.versions: dict[int, Version] = {}
        self.current: int | None = None
        self.promotions: list[int] = []  # versions current before each promotion (newest last)
        self.split: list[dict[str, int]] = []
        self.sticky_key: str | None = None
        self.updated_at = ""

    # --- commands ---------------------------------------------------------------------------------

    def push(
        self, workspace_id: str, name: str, plan: dict[str, Any], message: str | None, **kw: Any
    ) -> tuple[int, bool]:
        """Save ``plan`` as the next version; the same content as a version saved before is that
        version (nothing recorded). Returns (version, created)."""
        digest = content_hash(plan)
        for v in self.versions.values():
            if v.content_hash == digest:
                return v.number, False
        number = max(self.versions, default=0) + 1
        promote = bool(kw.pop("promote", False)) or self.current is None
        self.trigger(
            c.PlanVersionCreated,
            workspace_id=workspace_id,
            name=name,
            version=number,
            plan=plan,
            content_hash=digest,
            message=message,
            current=promote,
            **kw,
        )
        return number, True

    def promote(self, version: int, **envelope: Any) -> None:
        self._known(version)
        if version == self.current and not self.split:
            return  # already all traffic: nothing changes
        self.trigger(
            c.PlanPromoted,
            workspace_id=self.workspace_id,
            name=self.name,
            version=version,
            previous=self.current,
            **envelope,
        )

    def rollback(self, **envelope: Any) -> int:
        """Make the version current before the last promotion current again."""
        if not self.promotions or self.current is None:
            raise Refused(f"plan {self.name!r} has no earlier current version to roll back to")
        self.trigger(
            c.PlanRolledBack,
            workspace_id=self.workspace_id,
            name=self.name,
            version=self.promotions[-1],
            previous=self.current,
            **envelope,
        )
        assert self.current is not None
        return self.current

    def route(self, split: list[dict[str, Any]], sticky_key: str | None, **envelope: Any) -> None:
        self.trigger(
            c.PlanRoutingSet,
            workspace_id=self.workspace_id,
            name=self.name,
            split=self._checked_split(split),
            sticky_key=sticky_key,
            **envelope,
        )

    def _checked_split(self, split: list[dict[str, Any]]) -> list[dict[str, int]]:
        try:
            parts = [{"version": int(p["version"]), "weight": int(p["weight"])} for p in split]
        except (KeyError, TypeError, ValueError):
            raise Invalid("split: a list of {version, weight} with whole numbers") from None
        if not parts:
            return []
        versions = [p["version"] for p in parts]
        if len(set(versions)) != len(versions):
            raise Invalid("split: each version appears once")
        if missing := [v for v in versions if v not in self.versions]:
            raise Invalid(f"split: plan {self.name!r} has no version {missing[0]}")
        if any(not 0 <= p["weight"] <= 100 for p in parts):
            raise Invalid("split: each weight is between 0 and 100")
        if (total := sum(p["weight"] for p in parts)) != 100:
            raise Invalid(f"split: the weights sum to {total}, not 100")
        return parts

    # --- which version runs -----------------------------------------------------------------------

    def choose(self, pinned: int | None, inputs: dict[str, Any], execution_id: UUID) -> Choice:
        """Pinned, else by the A/B split (sticky per the key's input value), else current."""
        if pinned is not None:
            self._known(pinned)
            return Choice(pinned, "pinned")
        if self.split:
            value = inputs.get(self.sticky_key) if self.sticky_key else None
            key = json.dumps(value, sort_keys=True) if value is not None else str(execution_id)
            n = bucket(self.name, key)
            for part in self.split:
                if n < part["weight"]:
                    return Choice(part["version"], "split")
                n -= part["weight"]
        if self.current is None:
            raise NotFound(f"plan {self.name!r} has no current version")
        return Choice(self.current, "current")

    def _known(self, version: int) -> Version:
        found = self.versions.get(version)
        if found is None:
            raise NotFound(f"plan {self.name!r} has no version {version}")
        return found

    def version_of(self, version: int) -> Version:
        return self._known(version)

    # --- views ------------------------------------------------------------------------------------

    def view(self) -> dict[str, Any]:
        latest = max(self.versions, default=None)
        return {
            "name": self.name,
            "current_version": self.current,
            "latest_version": latest,
            "versions": [v.summary() for v in self.versions.values()],
            "routing": {"split": self.split, "sticky_key": self.sticky_key},
            "can_roll_back_to": self.promotions[-1] if self.promotions else None,
            "updated_at": self.updated_at,
        }

    # --- events -----------------------------------------------------------------------------------

    def on_version_created(self, e: c.PlanVersionCreated) -> None:
        self.workspace_id, self.name = e.workspace_id, e.name
        at = e.occurred_at.isoformat()
        self.versions[e.version] = Version(
            e.version, e.plan, e.content_hash, e.actor, e.message, at
        )
        if e.current:
            self._make_current(e.version)
        self.updated_at = at

    def on_promoted(self, e: c.PlanPromoted) -> None:
        self._make_current(e.version)
        self.split = []
        self.updated_at = e.occurred_at.isoformat()

    def on_rolled_back(self, e: c.PlanRolledBack) -> None:
        self.promotions.pop()
        self.current, self.split = e.version, []
        self.updated_at = e.occurred_at.isoformat()

    def on_routing_set(self, e: c.PlanRoutingSet) -> None:
        self.split, self.sticky_key = list(e.split), e.sticky_key
        self.updated_at = e.occurred_at.isoformat()

    def _make_current(self, version: int) -> None:
        if self.current is not None and self.current != version:
            self.promotions.append(self.current)
        self.current = version
