"""The saved-plan library on real PostgreSQL starts from its newest snapshot: after thousands of
events a start reads no more than about ``snapshot_every`` of them, and ends as a whole read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from baton_common import contracts as c
from baton_common.startsnapshots import StartSnapshots
from baton_common.store import Commit, PostgresEventStore
from baton_planner.library import PlanLibrary
from baton_planner.saved import SavedPlan

pytestmark = pytest.mark.integration
EVERY = 100


def history(store: PostgresEventStore, running: PlanLibrary, events: int) -> None:
    """Pushes, promotions, rollbacks and splits over ten plans of two workspaces; the running
    library follows and takes its snapshots as the service's minute loop does."""
    plans = [SavedPlan(UUID(int=i + 1)) for i in range(10)]
    for i in range(events):
        plan = plans[i % 10]
        if i % 5 == 4 and plan.promotions:
            plan.rollback(actor="ops")
        elif i % 5 == 4 and len(plan.versions) > 1:
            plan.promote(len(plan.versions) - 1)
        elif i % 7 == 6 and len(plan.versions) > 1:
            plan.route([{"version": 1, "weight": 30}, {"version": 2, "weight": 70}], "user")
        else:
            steps = [{"id": "a", "tool": "mock.agent", "input": {"task": f"t{i}"}}]
            plan.push(f"ws{i % 2}", f"p{i % 10}", {"steps": steps}, f"v{i}", promote=i % 3 == 0)
        if i % 50 == 49:
            store.commit(Commit(events=[e for p in plans for e in p.collect()]))
            running.refresh()
            running.snapshot()
    store.commit(Commit(events=[e for p in plans for e in p.collect()]))


def plans(library: PlanLibrary) -> dict[UUID, dict[str, Any]]:
    return {
        i: {k: v for k, v in vars(p).items() if k != "pending"} for i, p in library.plans.items()
    }


@pytest.fixture
def store(database_url: str, schema: str) -> Iterator[PostgresEventStore]:
    store = PostgresEventStore(database_url, "planner", schema=schema)
    yield store
    store.close()


def test_a_start_reads_the_log_after_the_newest_snapshot_and_ends_as_a_whole_read(
    store: PostgresEventStore, database_url: str, schema: str
) -> None:
    snapshots = StartSnapshots(database_url, schema, "planner")
    running = PlanLibrary(store, snapshots=snapshots, snapshot_every=EVERY)
    running.start()
    history(store, running, 3_020)  # the last 20 after the last look
    later, whole = PlanLibrary(store, snapshots=snapshots), PlanLibrary(store)
    later.start()
    whole.start()
    assert whole.read > 20 * EVERY  # the whole history (some calls change nothing)
    assert 0 < later.read <= EVERY
    assert later.snapshot_at == running.snapshot_at > 0
    assert plans(later) == plans(whole) and len(plans(whole)) == 10
    call = c.PlanCall(op="list", workspace_id="ws1")
    assert later.run(call)[1].body == whole.run(call)[1].body


def test_a_snapshot_that_does_not_restore_is_passed_over_for_the_whole_log(
    store: PostgresEventStore, database_url: str, schema: str
) -> None:
    snapshots = StartSnapshots(database_url, schema, "planner")
    history(store, PlanLibrary(store), 200)
    stale = {"position": 10**9, "plans": [{"shape": ["gone"], "state": {}}]}
    snapshots.save(10**9, stale)  # taken of a SavedPlan of another shape
    later, whole = PlanLibrary(store, snapshots=snapshots), PlanLibrary(store)
    later.start()
    whole.start()
    assert later.read == whole.read > 100
    assert plans(later) == plans(whole)
