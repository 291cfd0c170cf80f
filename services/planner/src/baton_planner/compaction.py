"""The planner's tool outcomes stay a handful of events, not one per batch of steps ever read.

The learner writes a ``ToolOutcomesRecorded`` event per batch of step outcomes it reads (per
workspace: for each tool, steps ok, failed, cached, and milliseconds), and folds them at start
by adding them up. Addition does not care about order or grouping, so every outcome event of a
workspace can be replaced by one holding their sum and the learner folds the same figures.

``compact_outcomes`` does that in one transaction: the store's table locked as a commit locks
it (positions stay in commit order), each workspace's sum written as a new event, the summed
ones deleted. A crash before the commit changes nothing; after it, the sum stands in for them.
Only events the relay has already published are taken (no other service reads them; the sum is
published like any new event, and nothing but the planner folds learning events).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any
from uuid import NAMESPACE_URL, uuid5

import psycopg
from baton_common import contracts as c
from baton_common.contracts import registry
from psycopg.sql import SQL, Identifier

# Compacting fewer than this many outcome events of a workspace is not worth a new one.
AT_LEAST = 2
PER_COMMIT = 10_000  # outcome events read, summed and deleted per transaction


def compact_outcomes(url: str, schema: str, table: str, upto: int) -> int:
    """Replace each workspace's outcome events at positions up to ``upto`` by one event with
    their sum, ``PER_COMMIT`` events at a time (the table is locked meanwhile: a long history's
    first compaction does not hold up the planner's commits); how many events went."""
    gone, after = 0, 0
    while True:
        summed_now, after, read = _compact_some(url, schema, table, after, upto)
        gone += summed_now
        if read < PER_COMMIT:
            return gone


def _compact_some(url: str, schema: str, table: str, after: int, upto: int) -> tuple[int, int, int]:
    """One transaction: (events summed, the last position read, events read)."""
    names = {"s": Identifier(schema), "t": Identifier(table)}
    with psycopg.connect(url) as conn:  # one transaction, committed on leaving the block
        conn.execute(SQL("LOCK TABLE {s}.{t} IN EXCLUSIVE MODE").format(**names))
        rows = conn.execute(
            SQL(
                "SELECT notification_id, state FROM {s}.{t} WHERE topic = %s"
                " AND notification_id > %s AND notification_id <= %s"
                " ORDER BY notification_id LIMIT %s"
            ).format(**names),
            (c.ToolOutcomesRecorded.TYPE, after, upto, PER_COMMIT),
        ).fetchall()
        by_workspace: dict[str, list[tuple[int, Any]]] = defaultdict(list)
        reg = registry()
        for position, state in rows:
            event = reg.decode(bytes(state))
            by_workspace[event.workspace_id].append((position, event))
        gone = 0
        for workspace, found in by_workspace.items():
            if len(found) < AT_LEAST:
                continue
            total = summed([e for _, e in found], workspace, found[-1][0])
            conn.execute(
                SQL(
                    "INSERT INTO {s}.{t} (originator_id, originator_version, topic, state)"
                    " VALUES (%s, %s, %s, %s)"
                ).format(**names),
                (total.aggregate_id, total.aggregate_version, total.type, total.to_json()),
            )
            conn.execute(
                SQL("DELETE FROM {s}.{t} WHERE notification_id = ANY(%s)").format(**names),
                ([p for p, _ in found],),
            )
            gone += len(found)
    return gone, rows[-1][0] if rows else after, len(rows)


def summed(events: list[Any], workspace: str, last: int) -> c.ToolOutcomesRecorded:
    """One outcome event holding the sum of ``events`` (all of ``workspace``, the last of them
    at position ``last``: the new event's id is unique to the compaction that made it)."""
    per_tool: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        for tool, counts in e.outcomes.items():
            per_tool[tool].update(counts)
    return c.ToolOutcomesRecorded(
        aggregate_id=uuid5(NAMESPACE_URL, f"baton:planner:outcomes-sum:{workspace}:{last}"),
        aggregate_version=1,
        workspace_id=workspace,
        outcomes={t: {k: float(v) for k, v in n.items()} for t, n in per_tool.items()},
    )
