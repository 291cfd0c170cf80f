"""Lists of the service's aggregates, read from its own events table, newest first.

The objects are few (endpoints, subscriptions) or read a page at a time (deliveries), so a scan
of one topic is enough; a read model would be the next step for very long delivery logs.
"""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

from baton_common.store import MemoryEventStore, PostgresEventStore
from psycopg.sql import SQL, Identifier

# An event's JSON as jsonb: its text may escape a NUL character (a payload or a name sent that
# way), which jsonb refuses; the fields read here never hold one, so it is swapped for U+FFFD.
_STATE = r"replace(convert_from(state, 'UTF8'), '\u0000', '\ufffd')::jsonb"
_QUERY = (
    "SELECT originator_id FROM {s}.{t} WHERE topic = %s"
    f" AND (%s::text IS NULL OR {_STATE}->>'workspace_id' = %s)"
    " AND (%s::timestamptz IS NULL"
    f"  OR ({_STATE}->>'occurred_at')::timestamptz >= %s)"
    " ORDER BY notification_id DESC LIMIT %s"
)


def aggregate_ids(
    store: PostgresEventStore | MemoryEventStore,
    topic: str,
    workspace_id: str | None,
    limit: int,
    since: datetime | None = None,
) -> list[UUID]:
    """Aggregates with an event of ``topic`` (since a time) in a workspace (all when None)."""
    if isinstance(store, PostgresEventStore):
        return _postgres(store, topic, workspace_id, limit, since)
    out: list[UUID] = []
    for stored in reversed(store.recorder._stored_events):
        data = json.loads(stored.state)
        if stored.topic != topic or workspace_id not in (None, data["workspace_id"]):
            continue
        if since is None or datetime.fromisoformat(data["occurred_at"]) >= since:
            out.append(UUID(str(stored.originator_id)))
    return out[:limit]


def _postgres(
    store: PostgresEventStore,
    topic: str,
    workspace_id: str | None,
    limit: int,
    since: datetime | None,
) -> list[UUID]:
    query = SQL(_QUERY).format(
        s=Identifier(store.datastore.schema), t=Identifier(store.recorder.events_table_name)
    )
    with store.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(query, (topic, workspace_id, workspace_id, since, since, limit))
        return [UUID(str(r["originator_id"])) for r in curs.fetchall()]
