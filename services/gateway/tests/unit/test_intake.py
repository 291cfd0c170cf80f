"""Executions other services ask for: recorded once per idempotency key."""

from __future__ import annotations

from uuid import uuid4

from baton_common import contracts as c
from baton_common.store import Commit, MemoryEventStore
from baton_gateway.application import IntakeApp, execution_id_for


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
