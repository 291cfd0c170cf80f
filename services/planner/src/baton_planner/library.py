"""The saved plans of every workspace, as the planner's store says, and the calls the gateway
makes on them (push, list, get, version, diff, promote, rollback, route, resolve).

A read follows the store's log (``refresh``: every replica's commits); a change loads the one
aggregate, changes it and returns the commit, which the call server writes (a lost race is a
``ConcurrencyConflict``, and the call is made again).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.catalogue import DEFAULT_CATALOGUE, Catalogue
from baton_common.contracts import registry
from baton_common.plans import PlanInvalid, validate_plan
from baton_common.secretinputs import secret_input_names
from baton_common.snapshots import Snapshots, freeze, thaw
from baton_common.startsnapshots import MemoryStartSnapshots, StartsFromSnapshot, StartSnapshots
from baton_common.store import Commit, MemoryEventStore, PostgresEventStore

from baton_planner.diff import diff_plans
from baton_planner.saved import Invalid, NotFound, SavedPlan, SavedPlanError, Version

TOPICS = sorted(t for t in registry().types() if t.startswith("saved_plan."))
Result = tuple[Commit | None, c.PlanReply]


class PlanLibrary(StartsFromSnapshot):
    """Synchronous (call it from a thread): the store is. ``start`` begins from the newest
    snapshot of every saved plan (``snapshots``), if any, rather than the log's start."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        catalogue: Catalogue = DEFAULT_CATALOGUE,
        snapshots: StartSnapshots | MemoryStartSnapshots | None = None,
        snapshot_every: int = StartsFromSnapshot.snapshot_every,
    ) -> None:
        self.store, self.catalogue = store, catalogue
        self.aggregates = Snapshots(store, [Version])  # a saved plan lives as long as its workspace
        self.snapshots, self.snapshot_every = snapshots, snapshot_every
        self.plans: dict[UUID, SavedPlan] = {}
        self.lock = threading.Lock()  # the call server and the consumer refresh from threads
        self.ops: dict[str, Callable[[c.PlanCall], Result]] = {
            "push": self.push,
            "list": self.listing,
            "get": self.get,
            "version": self.version,
            "diff": self.diff,
            "promote": self.promote,
            "rollback": self.rollback,
            "route": self.route,
            "resolve": self.resolve,
        }

    def refresh(self) -> None:
        """Apply what the log holds after ``position``."""
        with self.lock:
            while True:
                rows = self.store.recorder.select_notifications(
                    self.position, 1000, topics=TOPICS, inclusive_of_start=False
                )
                for row in rows:
                    event = registry().decode(row.state)
                    plan = self.plans.setdefault(event.aggregate_id, SavedPlan(event.aggregate_id))
                    if event.aggregate_version > plan.version:
                        plan.apply(event)
                self.read += len(rows)
                if rows:
                    self.position = rows[-1].id
                if len(rows) < 1000:
                    return

    def _state(self) -> dict[str, Any]:
        with self.lock:
            plans = [freeze(p, p.workspace_id) for p in self.plans.values()]
            return {"position": self.position, "plans": plans}

    def _restore(self, data: dict[str, Any]) -> None:
        plans = [thaw(SavedPlan, doc, {"Version": Version}) for doc in data["plans"]]
        with self.lock:
            self.plans = {p.id: p for p in plans}

    def load(self, workspace_id: str, name: str) -> SavedPlan:
        """The plan as stored now (for a change, or to resolve a run): straight from the store."""
        plan_id = c.saved_plan_id(workspace_id, name)
        found = self.aggregates.load(SavedPlan, plan_id)
        if found is None:
            raise NotFound(f"no saved plan {name!r}")
        return found

    def run(self, call: c.PlanCall) -> Result:
        op = self.ops.get(call.op)
        if op is None:
            return None, c.PlanReply(status=400, detail=f"unknown operation {call.op!r}")
        try:
            return op(call)
        except PlanInvalid as exc:
            problems = [p.model_dump() for p in exc.problems]
            return None, c.PlanReply(status=422, detail=str(exc), body={"problems": problems})
        except SavedPlanError as exc:
            return None, c.PlanReply(status=exc.status, detail=str(exc))

    # --- reads ------------------------------------------------------------------------------------

    def listing(self, call: c.PlanCall) -> Result:
        self.refresh()
        mine = [p for p in self.plans.values() if p.workspace_id == call.workspace_id]
        items = [_brief(p) for p in sorted(mine, key=lambda p: p.name)]
        return None, _ok({"items": items})

    def get(self, call: c.PlanCall) -> Result:
        return None, _ok(self._named(call).view())

    def version(self, call: c.PlanCall) -> Result:
        plan = self._named(call)
        v = plan.version_of(_number(call.body.get("version"), "version"))
        return None, _ok({"name": plan.name, **v.summary(), "plan": v.plan})

    def diff(self, call: c.PlanCall) -> Result:
        plan = self._named(call)
        a = plan.version_of(_number(call.body.get("from"), "from"))
        b = plan.version_of(_number(call.body.get("to"), "to"))
        body = {"name": plan.name, "from": a.number, "to": b.number, **diff_plans(a.plan, b.plan)}
        return None, _ok(body)

    def resolve(self, call: c.PlanCall) -> Result:
        """Does the plan (and the pinned version) exist? The gateway asks before accepting a run;
        the version is chosen when the run is planned. ``secret_inputs``: the inputs a version
        sends to a secret tool field, which the gateway seals before the run is stored."""
        plan = self._named(call)
        pinned = call.body.get("version")
        if pinned is not None:
            candidates = [plan.version_of(_number(pinned, "version"))]
        elif plan.current is None:
            raise NotFound(f"plan {plan.name!r} has no current version")
        else:  # a split or a promotion may pick any version by the time the run is planned
            candidates = list(plan.versions.values())
        secret = set().union(*(secret_input_names(v.plan, self.catalogue) for v in candidates))
        reply = {
            "name": plan.name,
            "current_version": plan.current,
            "secret_inputs": sorted(secret),
        }
        return None, _ok(reply)

    def _named(self, call: c.PlanCall) -> SavedPlan:
        return self.load(call.workspace_id, _name(call))

    # --- changes ----------------------------------------------------------------------------------

    def push(self, call: c.PlanCall) -> Result:
        name = _name(call)
        raw = call.body.get("plan")
        if not isinstance(raw, dict):
            raise Invalid("plan: a plan is a mapping with 'steps'")
        checked = validate_plan({**raw, "name": name}, self.catalogue)
        content = checked.model_dump(mode="json", exclude_defaults=True)
        plan_id = c.saved_plan_id(call.workspace_id, name)
        saved = SavedPlan.rebuild(plan_id, self.store.load(plan_id)) or SavedPlan(plan_id)
        message = call.body.get("message")
        number, created = saved.push(
            call.workspace_id,
            name,
            content,
            str(message) if message is not None else None,
            promote=bool(call.body.get("promote")),
            actor=call.actor,
        )
        body = {"name": name, "version": number, "created": created, "current": saved.current}
        return _commit(saved, 201 if created else 200, body)

    def promote(self, call: c.PlanCall) -> Result:
        plan = self._named(call)
        plan.promote(_number(call.body.get("version"), "version"), actor=call.actor)
        return _commit(plan, 200, plan.view())

    def rollback(self, call: c.PlanCall) -> Result:
        plan = self._named(call)
        plan.rollback(actor=call.actor)
        return _commit(plan, 200, plan.view())

    def route(self, call: c.PlanCall) -> Result:
        plan = self._named(call)
        split = call.body.get("split")
        if not isinstance(split, list):
            raise Invalid("split: a list of {version, weight}")
        sticky = call.body.get("sticky_key")
        if sticky is not None and (not isinstance(sticky, str) or not sticky.strip()):
            raise Invalid("sticky_key: the name of an input")
        plan.route(split, sticky, actor=call.actor)
        return _commit(plan, 200, plan.view())


def _brief(p: SavedPlan) -> dict[str, Any]:
    return {
        "name": p.name,
        "current_version": p.current,
        "latest_version": max(p.versions, default=None),
        "versions": len(p.versions),
        "routing": {"split": p.split, "sticky_key": p.sticky_key},
        "updated_at": p.updated_at,
    }


def _name(call: c.PlanCall) -> str:
    if not call.name:
        raise Invalid("a plan name is required")
    return call.name


def _number(value: Any, field: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise Invalid(f"{field}: a version number") from None
    if number < 1:
        raise Invalid(f"{field}: versions are numbered from 1")
    return number


def _ok(body: Any) -> c.PlanReply:
    return c.PlanReply(status=200, body=body)


def _commit(plan: SavedPlan, status: int, body: Any) -> Result:
    events = plan.collect()
    return (Commit(events=events) if events else None), c.PlanReply(status=status, body=body)
