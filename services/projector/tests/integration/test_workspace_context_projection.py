"""The workspace context's read model on real PostgreSQL: each key's newest write, a delete that
an older write folded after it cannot undo, a redelivered batch that changes nothing, and a
rebuild that writes the same rows."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from baton_common import contracts as c
from baton_common.events import Event
from baton_projector.context import WorkspaceContextProjection

pytestmark = pytest.mark.integration


def history() -> list[Event]:
    """Key ``a`` of two workspaces, written twice and deleted in one; key ``b`` written once."""
    eid, kid = uuid.uuid4(), uuid.uuid4()

    def written(ws: str, key: str, version: int, value: Any) -> Event:
        return c.WorkspaceContextWritten(
            workspace_id=ws, aggregate_id=kid, aggregate_version=version, key=key, value=value,
            version=version, written_by=f"{eid}:s", execution_id=eid, step_id="s",
        )  # fmt: skip

    return [
        written("acme", "a", 1, {"n": 1}),
        written("globex", "a", 1, "theirs"),
        written("acme", "a", 2, {"n": 2}),
        written("acme", "b", 1, [1]),
        c.WorkspaceContextDeleted(
            workspace_id="acme",
            aggregate_id=kid,
            aggregate_version=3,
            key="a",
            version=3,
            written_by="api:ops",
        ),
    ]


def rows(conn: psycopg.Connection[Any], schema: str) -> list[Any]:
    return conn.execute(
        f"SELECT workspace_id, key, value, version, written_by, deleted"
        f" FROM {schema}.workspace_context ORDER BY workspace_id, key"
    ).fetchall()


def apply(conn: psycopg.Connection[Any], projection: Any, events: list[Event]) -> None:
    with conn.transaction():
        projection.apply_batch(conn, events)


def test_keys_fold_to_their_newest_version_once_and_a_rebuild_writes_the_same(
    views: tuple[psycopg.Connection[Any], str],
) -> None:
    conn, schema = views
    projection = WorkspaceContextProjection(schema)
    events = history()
    apply(conn, projection, events)
    first = rows(conn, schema)
    assert [(r[0], r[1], r[2], r[3], r[5]) for r in first] == [
        ("acme", "a", None, 3, True),
        ("acme", "b", [1], 1, False),
        ("globex", "a", "theirs", 1, False),
    ]
    apply(conn, projection, events)  # redelivered: nothing changes
    apply(conn, projection, events[2:3])  # an older write after the delete: still deleted
    assert rows(conn, schema) == first
    with conn.transaction():  # a rebuild: drop the view, fold the history again
        projection.truncate(conn)
    apply(conn, projection, events[:2])
    apply(conn, projection, events[2:])
    assert rows(conn, schema) == first
