"""Tasks whose outcome the stream may have dropped go to the workers again, as the same attempt.

A worker's outcome (``task.finished``) is published, not stored: while the executor is stopped
for longer than the stream keeps messages, an outcome can age out of it unseen. The task itself
is in the executor's store, and an attempt that has no outcome yet still has its deadline timer
(it is cleared when the attempt settles). After the stream dropped what the executor was never
given (``StoreRecovery``), each such attempt whose task is older than the stream's age limit is
published again under its event id (the duplicate window, never longer than the age limit, is
past): a worker runs it under the same idempotency key (a tool that honours it does its work
once) and reports it under the same outcome id. The first outcome
to arrive settles the attempt; another is skipped by the inbox, or finds it settled. Without
this, the attempt would wait for its deadline and fail as "worker lost", costing a retry.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.service import Runtime
from baton_common.store import PostgresEventStore, run_sync
from psycopg.sql import SQL, Identifier

log = logging.getLogger(__name__)


async def redispatch_unsettled(runtime: Runtime) -> int:
    """Publish again the tasks of unsettled attempts that the stream no longer holds; how many."""
    store = runtime.store
    if not isinstance(store, PostgresEventStore):
        return 0
    before = datetime.now(UTC) - timedelta(seconds=runtime.settings.stream_max_age_s)
    tasks = await run_sync(unsettled_tasks, store, before)
    if tasks:
        await runtime.bus.publish(tasks)
        log.warning(
            "executor: %d tasks sent to the workers again (their outcome was due)", len(tasks)
        )
    return len(tasks)


def unsettled_tasks(store: PostgresEventStore, before: datetime) -> list[c.StepDispatched]:
    """The tasks, dispatched before ``before``, of attempts a worker was to settle."""
    found = []
    for payload in _deadlines(store):
        wanted = (payload["step_id"], int(payload["attempt"]), payload.get("task", "run"))
        for event in store.load(UUID(payload["execution_id"])):
            if (
                isinstance(event, c.StepDispatched)
                and (event.step_id, event.attempt, event.kind) == wanted
                and not event.inline
                and event.occurred_at < before
            ):
                found.append(event)
    return found


def _deadlines(store: PostgresEventStore) -> list[dict[str, Any]]:
    """The payloads of the deadline timers: one per attempt that waits for its outcome."""
    query = SQL("SELECT payload FROM {}.{} WHERE payload->>'kind' = 'deadline'").format(
        Identifier(store.datastore.schema), store.recorder.timers
    )
    with store.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(query)
        return [dict(row["payload"]) for row in curs.fetchall()]
