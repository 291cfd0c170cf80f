"""Catching up from the stores on real PostgreSQL: every store's log after the positions the
views recorded, merged in time order, each event once, and nothing when nothing is missing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from baton_common import contracts as c
from baton_common.events import Event
from baton_common.store import Commit, PostgresEventStore
from baton_projector import catchup

pytestmark = pytest.mark.integration
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def requested(at: int, workspace: str = "ws") -> Event:
    return c.ExecutionRequested(
        workspace_id=workspace,
        aggregate_id=uuid.uuid4(),
        aggregate_version=1,
        request=f"at {at}",
        occurred_at=T0 + timedelta(seconds=at),
    )


EVERYTHING = catchup.subject_matcher("baton", ["*.execution.>"])


def _collecting() -> tuple[list[Event], catchup.Apply]:
    """A list, and an ``apply`` that appends to it what it is given."""
    applied: list[Event] = []

    def apply(conn: psycopg.Connection[Any], events: list[Event]) -> None:
        applied.extend(events)

    return applied, apply


def test_the_stores_are_read_after_the_recorded_positions_in_time_order(
    database_url: str, schema: str
) -> None:
    gateway = PostgresEventStore(database_url, "gateway", schema=schema)
    executor = PostgresEventStore(database_url, "executor", schema=schema)
    gateway.commit(Commit(events=[requested(1), requested(4)]))
    executor.commit(Commit(events=[requested(2), requested(3), requested(5)]))
    applied, apply = _collecting()
    with psycopg.connect(database_url, autocommit=True) as conn:
        catchup.create_table(conn, schema)
        catchup.advance(conn, schema, {"executor": 1})  # its first event was applied already
        assert catchup.stores(conn, schema) == ["executor", "gateway"]
        assert catchup.catch_up(conn, schema, apply, EVERYTHING, batch=2) == 4
        assert [e.request for e in applied] == ["at 1", "at 3", "at 4", "at 5"]  # type: ignore[attr-defined]
        assert catchup.positions(conn, schema) == {"executor": 3, "gateway": 2}
        assert catchup.catch_up(conn, schema, apply, EVERYTHING) == 0  # nothing missing now
        executor.commit(Commit(events=[requested(6, "other")]))
        none = catchup.subject_matcher("baton", ["*.plan.>"])
        assert catchup.catch_up(conn, schema, apply, none) == 1  # read, not wanted
        assert len(applied) == 4 and catchup.positions(conn, schema)["executor"] == 4
    gateway.close()
    executor.close()


def test_a_rebuild_reads_from_the_stores_only_what_the_stream_did_not_deliver(
    database_url: str, schema: str
) -> None:
    """The stream held positions 3-5 and 7 of the executor's log (its head dropped by age,
    6 parked): the stores give the rest, each event once, in time order."""
    executor = PostgresEventStore(database_url, "executor", schema=schema)
    executor.commit(Commit(events=[requested(at) for at in range(1, 10)]))
    runs: catchup.Runs = {}
    for position in (3, 4, 5, 7, 4):  # 4 again: a relay's re-publish past the duplicate window
        catchup.delivered(runs, "executor", position)
    assert runs == {"executor": [[3, 5], [7, 7], [4, 4]]}
    applied, apply = _collecting()
    with psycopg.connect(database_url, autocommit=True) as conn:
        catchup.create_table(conn, schema)
        assert catchup.catch_up(conn, schema, apply, EVERYTHING, 2, delivered=runs) == 5
    assert [e.request for e in applied] == ["at 1", "at 2", "at 6", "at 8", "at 9"]  # type: ignore[attr-defined]
    executor.close()
