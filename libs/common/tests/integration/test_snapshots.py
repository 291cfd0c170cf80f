"""Long-lived aggregates load through snapshots on real PostgreSQL: one with 10,000 events reads
about as many events as one with 10, and comes back the same as folding its whole history."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime
from typing import Any

import psycopg
import pytest
from baton_common import contracts as c
from baton_common.aggregate import Aggregate
from baton_common.snapshots import Snapshots
from baton_common.store import Commit, PostgresEventStore

pytestmark = pytest.mark.integration
EVERY = 100


@dataclasses.dataclass
class Role:
    name: str
    since: datetime


class Team(Aggregate):
    """Holds what snapshots must give back: an event, datetimes, tuples, int keys, a dataclass."""

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.created: c.WorkspaceCreated | None = None
        self.roles: dict[str, Role] = {}
        self.changes: dict[int, tuple[str, str]] = {}
        self.gone: set[str] = set()

    def on_created(self, e: c.WorkspaceCreated) -> None:
        self.created = e

    def on_member_set(self, e: c.MemberSet) -> None:
        self.roles[e.user] = Role(e.role, e.occurred_at)
        self.changes[self.version + 1] = (e.user, e.role)
        self.gone.discard(e.user)

    def on_member_removed(self, e: c.MemberRemoved) -> None:
        self.roles.pop(e.user, None)
        self.gone.add(e.user)


def team_with(store: PostgresEventStore, events: int) -> uuid.UUID:
    team = Team(uuid.uuid4())
    team.trigger(c.WorkspaceCreated, workspace_id="ws", name="team")
    for i in range(events - 1):
        if i % 7 == 6:
            team.trigger(c.MemberRemoved, workspace_id="ws", user=f"u{i % 50}")
        else:
            team.trigger(c.MemberSet, workspace_id="ws", user=f"u{i % 50}", role=f"r{i}")
        if len(team.pending) == 1000:
            store.commit(Commit(events=team.collect()))
    store.commit(Commit(events=team.collect()))
    return team.id


def state(team: Team | None) -> dict[str, Any]:
    assert team is not None
    return {k: v for k, v in vars(team).items() if k != "pending"}


def test_a_long_history_loads_from_a_snapshot_reading_no_more_than_a_short_one(
    database_url: str, schema: str
) -> None:
    store = PostgresEventStore(database_url, "svc", schema=schema)
    long, short = team_with(store, 10_000), team_with(store, 10)
    snapshots = Snapshots(store, [Role], every=EVERY)
    first = snapshots.load(Team, long)  # no snapshot yet: the whole history, then one is taken
    assert snapshots.read == 10_000
    reads = {}
    for name, team_id in (("long", long), ("short", short)):
        snapshots.read = 0
        loaded = snapshots.load(Team, team_id)
        reads[name] = snapshots.read
        assert state(loaded) == state(Team.rebuild(team_id, store.load(team_id)))
    assert reads == {"long": 0, "short": 10}  # from the snapshot: nothing after it yet
    assert state(first) == state(snapshots.load(Team, long))
    with psycopg.connect(database_url, autocommit=True) as conn:  # as erasure.py finds them
        row = conn.execute(
            f"SELECT count(*) FROM {schema}.svc_snapshots WHERE"
            " convert_from(state, 'UTF8')::json->>'workspace_id' = 'ws'"
        ).fetchone()
    assert row is not None and row[0] == 1  # deleting the workspace deletes it

    more = Team.rebuild(long, store.load(long))
    assert more is not None
    for i in range(EVERY + 5):  # the history grows past the interval: a new snapshot on load
        more.trigger(c.MemberSet, workspace_id="ws", user="late", role=f"late{i}")
    store.commit(Commit(events=more.collect()))
    snapshots.read = 0
    assert state(snapshots.load(Team, long)) == state(more)
    assert snapshots.read == EVERY + 5
    snapshots.read = 0
    assert state(snapshots.load(Team, long)) == state(more) and snapshots.read == 0
    store.close()


def test_a_snapshot_of_another_shape_is_passed_over_for_the_history(
    database_url: str, schema: str
) -> None:
    store = PostgresEventStore(database_url, "svc", schema=schema)
    team_id = team_with(store, 3 * EVERY)
    Snapshots(store, [Role], every=EVERY).load(Team, team_id)  # taken

    class Grown(Team):  # the class gained an attribute since the snapshot was taken
        def __init__(self, aggregate_id: uuid.UUID) -> None:
            super().__init__(aggregate_id)
            self.label = "new"

    again = Snapshots(store, [Role], every=10 * EVERY)
    grown = again.load(Grown, team_id)
    assert again.read == 3 * EVERY and grown is not None and grown.label == "new"
    store.close()
