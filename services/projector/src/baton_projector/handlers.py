"""The projector's consumer: every execution and plan event, applied in batches."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from baton_common.consumer import Consumer, Delivery
from baton_common.events import Event
from baton_common.service import Runtime
from baton_common.store import Commit, run_sync

from baton_projector import catchup
from baton_projector.access import AccessProjection
from baton_projector.approvals import ApprovalProjection
from baton_projector.projections import ExecutionProjection

log = logging.getLogger(__name__)

# Executions, plans and gates for their views; every domain that people change, for the audit.
SUBJECTS = [
    "*.execution.>",
    "*.plan.>",
    "*.workspace.>",
    "*.approval.>",
    "*.schedule.>",
    "*.trigger.>",
    "*.webhook.>",
    "*.saved_plan.>",
    "*.log.>",
    "*.context.>",  # the workspace's shared context (and the keys an execution wrote)
    "*.relay.>",  # an event of an execution parked by a relay: its view fails with the reason
]


class ViewTracking:
    """The consumer's view of "already handled": the projection checks event ids itself,
    inside the same transaction that writes the views."""

    name = "projector"

    def handled(self, consumer: str, message_ids: Sequence[str]) -> set[str]:
        return set()

    def commit(self, commit: Commit) -> None:
        return None


def projector_consumer(
    runtime: Runtime,
    conn: psycopg.Connection[Any],
    projection: ExecutionProjection,
    access: AccessProjection,
    approvals: ApprovalProjection,
    extra: Sequence[Any] = (),
    reopen: Callable[[], psycopg.Connection[Any]] | None = None,
) -> Consumer:
    current = [conn]
    schema = runtime.settings.db_schema

    def apply(conn: psycopg.Connection[Any], events: list[Event]) -> None:
        projection.apply_batch(conn, events)
        access.apply_batch(conn, events)
        approvals.apply_batch(conn, events)
        for more in extra:  # saved plans, step logs, business metrics
            more.apply_batch(conn, events)

    def session() -> psycopg.Connection[Any]:
        if reopen is not None and (current[0].closed or current[0].broken):
            current[0] = reopen()  # the database restarted (or dropped us): a new session
        return current[0]

    def write(batch: list[Delivery]) -> None:
        conn = session()
        try:
            with conn.transaction():
                apply(conn, [d.event for d in batch])
                catchup.advance(conn, schema, catchup.seen_in(batch))
        except Exception:
            projection.forget()  # remembered views may be ahead of what was written
            raise

    def catch_up() -> int:
        try:
            return catchup.catch_up(session(), schema, apply, wanted)
        except Exception:
            projection.forget()
            raise

    async def on_messages(batch: list[Delivery]) -> Commit:
        await run_sync(write, batch)
        return Commit()

    async def on_gap() -> None:
        read = await run_sync(catch_up)
        log.info("projector: %d events read from the stores to catch up", read)

    wanted = catchup.subject_matcher(runtime.settings.subject_root, SUBJECTS)

    return Consumer(
        runtime.bus,
        ViewTracking(),  # type: ignore[arg-type]
        "projector",
        SUBJECTS,
        on_messages,
        batch=1000,
        linger_s=0.05,  # views a moment later, out of the way of the executor and workers
        in_order=True,  # a view folds an execution's events in order, even after a crash
        on_gap=on_gap,  # the stream dropped what it was never given: read from the stores
    )
