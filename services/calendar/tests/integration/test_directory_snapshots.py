"""The calendar directory on real PostgreSQL starts from its newest snapshot: after thousands of
events a start reads no more than about ``snapshot_every`` of them, and ends as a whole read."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from baton_calendar.directory import Directory
from baton_calendar.domain import Calendar, CalendarEvent, calendar_id, event_id
from baton_common.startsnapshots import StartSnapshots
from baton_common.store import Commit, PostgresEventStore
from baton_common.testing import one_event_ics

pytestmark = pytest.mark.integration
EVERY = 100


def history(store: PostgresEventStore, running: Directory, events: int) -> None:
    """Calendars made, marked and deleted, events created, updated and cancelled (some UIDs in
    two calendars); the running directory follows and takes its snapshots as the service does."""
    for i in range(events // 10):
        ws = f"ws{i % 3}"
        cal = Calendar(calendar_id(ws, f"c{i}"))
        cal.create(ws, f"c{i}", timezone="Europe/Paris", default=i < 3, owner=f"o{i}@test")
        if i % 4 == 0:
            cal.mark(kind="room", capacity=i % 12)
        else:
            cal.mark(kind="person")
        aggregates: list[Calendar | CalendarEvent] = [cal]
        for j in range(3):
            uid = f"u{(i + j) % 40}@test"
            record = CalendarEvent(event_id(cal.id, uid))
            record.create(ws, cal.id, uid, one_event_ics(uid), idempotency_key=f"k{i}-{j}")
            record.update(one_event_ics(uid) + "\n")
            if j == 2:
                record.cancel("moved")
            aggregates.append(record)
        if i % 9 == 8:
            cal.delete()
        store.commit(Commit(events=[e for a in aggregates for e in a.collect()]))
        if i % 5 == 4:
            running.refresh()
            running.snapshot()


def folded(directory: Directory) -> dict[str, Any]:
    def fields(items: dict[UUID, Any]) -> dict[UUID, dict[str, Any]]:
        return {i: {k: v for k, v in vars(a).items() if k != "pending"} for i, a in items.items()}

    return {
        "calendars": fields(directory.calendars),
        "events": fields(directory.events),
        "by_uid": directory.by_uid,
    }


def test_a_start_reads_the_log_after_the_newest_snapshot_and_ends_as_a_whole_read(
    database_url: str, schema: str
) -> None:
    store = PostgresEventStore(database_url, "calendar", schema=schema)
    running = Directory(store)
    running.snapshots = StartSnapshots(database_url, schema, "calendar")
    running.snapshot_every = EVERY
    try:
        running.start()
        history(store, running, 3_020)
        later, whole = Directory(store), Directory(store)
        later.snapshots = running.snapshots
        later.start()
        whole.start()
        assert whole.read > 20 * EVERY
        assert 0 < later.read <= EVERY
        assert later.snapshot_at == running.snapshot_at > 0
        assert folded(later) == folded(whole)
        assert [k.name for k in later.live("ws1")] == [k.name for k in whole.live("ws1")]
        found = [d.event("ws1", "u5@test") for d in (later, whole)]
        assert found[0] is not None and found[1] is not None and found[0].id == found[1].id
    finally:
        store.close()
