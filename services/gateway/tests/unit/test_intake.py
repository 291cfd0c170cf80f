"""Executions other services ask for: recorded once per idempotency key."""

from __future__ import annotations

import asyncio
from uuid import uuid4

from baton_common import contracts as c
from baton_common.store import Commit, MemoryEventStore
from baton_gateway.application import IntakeApp, execution_id_for
from baton_gateway.domain import Conflict


def _ask(key: str, **fields: object) -> c.StartRequested:
    return c.StartRequested(
        aggregate_id=uuid4(), aggregate_version=1, workspace_id="acme", idempotency_key=key,
        request="collect reports", source="schedule", schedule_id="nightly", **fields,
    )  # fmt: skip


def test_a_start_request_becomes_one_execution_however_often_it_arrives() -> None:
    intake = IntakeApp(MemoryEventStore("gateway"), None)
    first = _ask("nightly:2026-11-25T09:00", trigger_chain=["t1"])
    [requested] = intake.on_start_requested([first, _ask("nightly:2026-11-25T09:00")])
    assert isinstance(requested, c.ExecutionRequested)
    assert requested.aggregate_id == execution_id_for("acme", "nightly:2026-11-25T09:00")
    assert (requested.schedule_id, requested.trigger_chain, requested.source) == (
        "nightly",
        ["t1"],
        "schedule",
    )
    assert requested.causation_id == first.event_id
    intake.store.commit(Commit(events=[requested]))
    assert intake.on_start_requested([_ask("nightly:2026-11-25T09:00")]) == []
    assert len(intake.on_start_requested([_ask("nightly:2026-11-25T10:00")])) == 1


class _SlowStore(MemoryEventStore):
    """A store whose commits take a turn of the event loop, as a real one's round trip does,
    and are counted."""

    def __init__(self) -> None:
        super().__init__("gateway")
        self.sizes: list[int] = []

    async def commit_async(self, commit: Commit) -> list[tuple[int, bytes]]:
        await asyncio.sleep(0.01)
        self.sizes.append(len(commit.events))
        return self.commit(commit)


async def test_concurrent_submissions_are_committed_together_each_with_its_own_answer() -> None:
    store = _SlowStore()
    intake = IntakeApp(store, None)
    first = await intake.submit_async("acme", {"request": "once", "idempotency_key": "k"})
    bodies = [{"request": f"job {i}"} for i in range(40)]
    bodies += [{"request": "once", "idempotency_key": "k"}]  # the same again: the first one
    bodies += [{"request": "other", "idempotency_key": "k"}]  # the key reused: a conflict
    results = await asyncio.gather(
        *(intake.submit_async("acme", b) for b in bodies), return_exceptions=True
    )
    created = [r for r in results[:40] if isinstance(r, tuple)]
    assert len({i for i, _ in created}) == 40 and all(new for _, new in created)
    assert results[40] == (first[0], False)
    assert isinstance(results[41], Conflict)
    # The first of them alone (nothing in flight), then the 41 that waited for it together;
    # that group failed on the reused key, so each of its members was tried alone.
    assert store.sizes == [1, 1, 41] + [1] * 41


async def test_a_burst_is_a_few_commits() -> None:
    store = _SlowStore()
    intake = IntakeApp(store, None)
    results = await asyncio.gather(
        *(intake.submit_async("acme", {"request": f"job {i}"}) for i in range(1000))
    )
    assert len({i for i, _ in results}) == 1000
    assert store.sizes == [1, 500, 499]  # the first alone, then the waiting ones in groups
    assert intake.commits == 3
