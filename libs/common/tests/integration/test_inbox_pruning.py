"""Inbox rows are pruned once the message they record can no longer come back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from baton_common.service import inbox_keep
from baton_common.settings import Settings
from baton_common.store import Commit, ConcurrencyConflict, PostgresEventStore

pytestmark = pytest.mark.integration


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresEventStore]:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    store = PostgresEventStore(database_url, "svc", schema=schema)
    yield store
    store.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def age(store: PostgresEventStore, message_ids: list[str], seconds: int) -> None:
    """Make rows look handled ``seconds`` ago."""
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {store.datastore.schema}.svc_inbox SET handled_at = now() - make_interval("
            "secs => %s) WHERE message_id = ANY(%s)",
            (seconds, message_ids),
        )


def test_rows_past_the_window_go_and_recent_ones_stay_and_still_dedupe(
    store: PostgresEventStore,
) -> None:
    old = [f"old-{i}" for i in range(25)]
    recent = [f"new-{i}" for i in range(5)]
    store.commit(Commit(handled=[("c", m) for m in old + recent]))
    age(store, old, 7200)
    age(store, recent[:1], 1800)  # inside a one-hour window, though not new

    assert store.prune_inbox(3600, batch=10) == 25  # in batches of 10: all of them
    assert store.handled("c", old + recent) == set(recent)
    # A redelivery inside the window is still recognised, and its commit refused.
    with pytest.raises(ConcurrencyConflict):
        store.commit(Commit(handled=[("c", recent[0])]))
    # One past it is handled again: its row is gone, as intended.
    store.commit(Commit(handled=[("c", old[0])]))
    assert store.prune_inbox(3600) == 0


def test_the_kept_time_never_falls_below_the_redelivery_window() -> None:
    short = Settings(BATON_INBOX_KEEP=1, BATON_ACK_WAIT=30)  # type: ignore[call-arg]
    assert inbox_keep(short) == 600 + 60  # the duplicate window, plus two redelivery waits
    assert inbox_keep(Settings()) == 24 * 3600  # the default: a day
    tiny = Settings(BATON_INBOX_KEEP=1, BATON_STREAM_MAX_AGE=5, BATON_ACK_WAIT=1)  # type: ignore[call-arg]
    assert inbox_keep(tiny) == 5 + 2  # the window is the stream's age when that is shorter
