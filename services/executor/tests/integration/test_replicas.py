"""Two executor replicas on one PostgreSQL: admission decided apart, settled by the store."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from baton_common import contracts as c
from baton_common.consumer import Delivery
from baton_common.settings import Settings
from baton_common.store import ConcurrencyConflict, PostgresEventStore
from baton_executor.admission import StoreAdmission
from baton_executor.application import ExecutorApp

pytestmark = pytest.mark.integration

PLAN = {"steps": [{"id": "s", "tool": "mock.agent", "locks": [{"name": "repo"}]}]}


def _replica(settings: Settings) -> ExecutorApp:
    store = PostgresEventStore(settings.database_url, "executor", schema=settings.db_schema)
    return ExecutorApp(store, admission=StoreAdmission(store))


def _plan(eid: UUID) -> Delivery:
    return Delivery(c.PlanProposed(aggregate_id=eid, aggregate_version=1, execution_id=eid,
                                   plan=PLAN, planner="direct"))  # fmt: skip


def _types(commit: Any) -> list[str]:
    return [e.type.split(".", 1)[1] for e in commit.events]


def test_two_replicas_granting_one_lock_at_once_one_commit_is_refused_and_decided_again(
    settings: Settings,
) -> None:
    a, b = _replica(settings), _replica(settings)
    first, second = uuid4(), uuid4()
    now = datetime.now(UTC)
    # Both decide before either commits: each sees the lock free.
    from_a, from_b = a.handle([_plan(first)], now), b.handle([_plan(second)], now)
    assert "step_dispatched" in _types(from_a) and "step_dispatched" in _types(from_b)
    a.store.commit(from_a)
    with pytest.raises(ConcurrencyConflict):
        b.store.commit(from_b)
    b.invalidate()  # what the consumer does on a conflict: forget, decide again
    again = b.handle([_plan(second)], datetime.now(UTC))
    b.store.commit(again)
    assert "step_waiting" in _types(again) and "step_dispatched" not in _types(again)
    waiting = next(e for e in again.events if isinstance(e, c.StepWaiting))
    assert waiting.holders == [f"{first}:s"]
