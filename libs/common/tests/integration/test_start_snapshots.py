"""Start snapshots hold every workspace's objects: deleting any workspace deletes them (the next
look of each service writes new ones)."""

from __future__ import annotations

from pathlib import Path

import pytest
from baton_common.archive import LocalArchive
from baton_common.erasure import delete_workspace
from baton_common.readmodels import create_tables
from baton_common.retention import connect
from baton_common.startsnapshots import StartSnapshots

pytestmark = pytest.mark.integration


def test_deleting_a_workspace_deletes_the_start_snapshots(
    database_url: str, schema: str, tmp_path: Path
) -> None:
    with connect(database_url) as conn:
        create_tables(conn, schema)
        planner, calendar = (StartSnapshots(database_url, schema, n) for n in ("planner", "c"))
        planner.save(7, {"position": 7, "plans": ["acme's"]})
        calendar.save(9, {"position": 9, "calendars": ["acme's"]})
        assert planner.load() == {"position": 7, "plans": ["acme's"]}
        removed = delete_workspace(conn, schema, LocalArchive(tmp_path), "acme")
        assert removed["start_snapshots"] == 2
        assert planner.load() is None and calendar.load() is None
