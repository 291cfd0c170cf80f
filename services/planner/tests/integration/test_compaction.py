"""The planner's tool outcome events on real PostgreSQL: compacted to one per workspace, the
learner folds the same figures from the store, and events past the relay are left alone."""

from __future__ import annotations

from collections import Counter
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.store import Commit, PostgresEventStore
from baton_planner import compaction
from baton_planner.compaction import compact_outcomes
from baton_planner.learning import Learner

pytestmark = pytest.mark.integration


def outcomes(workspace: str, ok: int, failed: int, ms: float) -> c.ToolOutcomesRecorded:
    return c.ToolOutcomesRecorded(
        aggregate_id=uuid4(),
        aggregate_version=1,
        workspace_id=workspace,
        outcomes={"http.get": {"ok": ok, "failed": failed, "ms": ms}, "mock.agent": {"ok": 1}},
    )


def folded(store: PostgresEventStore) -> dict[tuple[str, str], Counter[str]]:
    learner = Learner(None, 0.5)
    for _, event in store.notifications(0, 10_000):
        learner.apply(event)
    return learner.tools


def topics(store: PostgresEventStore) -> Counter[str]:
    return Counter(e.type for _, e in store.notifications(0, 10_000))


def test_outcome_events_are_summed_into_one_per_workspace_and_fold_the_same(
    database_url: str, schema: str
) -> None:
    store = PostgresEventStore(database_url, "planner", schema=schema)
    try:
        for i in range(30):
            store.commit(Commit(events=[outcomes("acme" if i % 3 else "beta", i % 4, 1, 10.5 * i)]))
        store.commit(Commit(events=[outcomes("solo", 2, 0, 7.0)]))  # one only: nothing to sum
        before = folded(store)
        upto = store.max_position()
        store.commit(Commit(events=[outcomes("acme", 5, 5, 50.0)]))  # not published yet
        late = folded(store)

        gone = compact_outcomes(database_url, schema, "planner_events", upto)

        assert gone == 30  # acme's 20 and beta's 10 (solo's one stays as it is)
        assert topics(store)[c.ToolOutcomesRecorded.TYPE] == 2 + 1 + 1  # sums, solo, the late one
        assert folded(store) == late != before
        assert compact_outcomes(database_url, schema, "planner_events", upto) == 0
        assert compact_outcomes(database_url, schema, "planner_events", store.max_position()) == 2
        assert folded(store) == late
    finally:
        store.close()


def test_a_long_history_is_compacted_a_transaction_at_a_time_to_the_same_figures(
    database_url: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compaction, "PER_COMMIT", 7)
    store = PostgresEventStore(database_url, "planner", schema=schema)
    try:
        for i in range(40):
            store.commit(Commit(events=[outcomes("acme" if i % 3 else "beta", i % 4, 1, 2.5 * i)]))
        before = folded(store)
        gone = compact_outcomes(database_url, schema, "planner_events", store.max_position())
        left = topics(store)[c.ToolOutcomesRecorded.TYPE]
        assert gone == 40 and left <= 2 * 6  # at most a sum per workspace per transaction of 7
        assert folded(store) == before
    finally:
        store.close()
