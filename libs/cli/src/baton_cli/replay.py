"""``baton replay``: an execution's history from the stores, and its state as of any event."""

from __future__ import annotations

import json
from uuid import UUID

from baton_common.archive import open_archive
from baton_common.archived import Archives
from baton_common.contracts import decode
from baton_common.events import Event
from baton_common.sealing import redact_fields
from baton_common.settings import Settings
from baton_common.store import PostgresEventStore
from baton_common.views import execution_id_of, fold

from baton_cli.client import call
from baton_cli.errors import CliError
from baton_cli.render import describe, render_view

OWNERS = ("gateway", "planner", "executor")


def history(execution_id: UUID, settings: Settings) -> list[Event]:
    """Every stored event about the execution, from each service's store, in time order."""
    events: list[Event] = []
    for owner in OWNERS:
        store = PostgresEventStore(
            settings.database_url, owner, schema=settings.db_schema, pool_size=1
        )
        try:
            events += store.load(execution_id)
        finally:
            store.close()
    events = [e for e in events if execution_id_of(e) == execution_id]
    if not events:  # past its retention period: the archive holds it
        archives = Archives(settings.database_url, settings.db_schema, open_archive())
        events = [decode(row["data"]) for row in archives.history_anywhere(execution_id)]
    return sorted(events, key=lambda e: e.occurred_at)


def history_from_api(execution_id: UUID, url: str) -> list[Event]:
    """The execution's history as the gateway serves it (the caller's key must see it)."""
    events: list[Event] = []
    after = 0
    while True:
        page = call("GET", url, f"/v1/executions/{execution_id}/events", params={"after": after})
        events += [decode(row["data"]) for row in page["items"]]
        if len(page["items"]) < 1000:
            return events
        after = page["items"][-1]["seq"]


def replay(execution: str, *, at: int | None, as_json: bool, url: str | None = None) -> int:
    try:
        execution_id = UUID(execution)
    except ValueError:
        raise CliError(f"{execution!r} is not an execution id") from None
    if url:
        events = history_from_api(execution_id, url)
    else:
        events = history(execution_id, Settings())
    if not events:
        raise CliError(f"no events for execution {execution_id}")
    if at is not None:
        if not 1 <= at <= len(events):
            raise CliError(f"--at takes 1…{len(events)} for this execution")
        view = fold(events[:at])
        assert view is not None
        print(
            json.dumps(view, indent=2)
            if as_json
            else f"as of event {at} ({events[at - 1].type}):\n" + render_view(view)
        )
        return 0
    if as_json:
        print(json.dumps([redact_fields(e.model_dump(mode="json")) for e in events], indent=2))
        return 0
    start = events[0].occurred_at
    for n, e in enumerate(events, 1):
        offset = (e.occurred_at - start).total_seconds() * 1000
        detail = describe(e.type, redact_fields(e.model_dump(mode="json"))) or ""
        print(f"{n:>4}  +{offset:>9.1f} ms  {e.type:<32} {detail.strip()}")
    return 0
