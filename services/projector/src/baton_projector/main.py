"""Wiring of the projector process, and the rebuild that ``baton projections rebuild`` runs."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from baton_common.events import Event
from baton_common.leader import Leadership
from baton_common.service import Runtime
from baton_common.settings import Settings
from baton_common.store import run_sync

from baton_projector import catchup
from baton_projector.access import AccessProjection
from baton_projector.agents import AgentProjection
from baton_projector.approvals import ApprovalProjection
from baton_projector.context import WorkspaceContextProjection
from baton_projector.handlers import SUBJECTS, projector_consumer
from baton_projector.observed import observed_projections
from baton_projector.plans import PlanProjection
from baton_projector.projections import ExecutionProjection, create_tables


def open_views(settings: Settings) -> psycopg.Connection[Any]:
    conn = psycopg.connect(settings.database_url, autocommit=True)
    create_tables(conn, settings.db_schema)
    catchup.create_table(conn, settings.db_schema)
    return conn


async def run_projector(settings: Settings) -> None:
    runtime = await Runtime.open("projector", settings)
    # Views are folds in event order: one projector applies at a time; replicas stand by (ready,
    # so rolling updates proceed) and take over when the leader's session ends.
    leader = Leadership(settings.database_url, f"projector:{settings.db_schema}")
    projection = ExecutionProjection(settings.db_schema)
    access = AccessProjection(settings.db_schema)
    approvals = ApprovalProjection(settings.db_schema)
    plans = PlanProjection(settings.db_schema)
    extra = [
        plans,
        *observed_projections(settings.db_schema),
        AgentProjection(settings.db_schema),
        WorkspaceContextProjection(settings.db_schema),
    ]
    runtime.metrics["projection_events_applied_total"] = lambda: float(projection.applied)
    conns = []

    async def lead() -> None:
        await leader.acquire()
        conns.append(await run_sync(open_views, settings))
        await runtime.start_consumer(
            projector_consumer(
                runtime,
                conns[0],
                projection,
                access,
                approvals,
                extra,
                lambda: open_views(settings),
            )
        )

    runtime.spawn(lead(), "leadership")
    await runtime.serve_forever()
    for conn in conns:
        conn.close()
    leader.release()


async def rebuild(settings: Settings, batch: int = 2000) -> dict[str, float]:
    """Drop the read models and fold every event of every store into them again, atomically.

    The stores, not the stream: the stream keeps only its last days (``BATON_STREAM_MAX_AGE``)."""
    conn = await run_sync(open_views, settings)
    projection = ExecutionProjection(settings.db_schema)
    views = [
        projection,
        AccessProjection(settings.db_schema),
        ApprovalProjection(settings.db_schema),
        PlanProjection(settings.db_schema),
        *observed_projections(settings.db_schema),
        AgentProjection(settings.db_schema),
        WorkspaceContextProjection(settings.db_schema),
    ]
    seen = [0]

    def apply(conn: psycopg.Connection[Any], events: list[Event]) -> None:
        seen[0] += len(events)
        for view in views:
            view.apply_batch(conn, events)

    def run() -> int:
        with conn.transaction():
            for view in views:
                view.truncate(conn)
            catchup.forget(conn, settings.db_schema)
            wanted = catchup.subject_matcher(settings.subject_root, SUBJECTS)
            return catchup.catch_up(conn, settings.db_schema, apply, wanted, batch)

    started = time.perf_counter()
    try:
        read = await run_sync(run)
    finally:
        conn.close()
    elapsed = time.perf_counter() - started
    return {
        "events": seen[0],
        "applied": projection.applied,
        "skipped": read - seen[0],
        "seconds": elapsed,
        "events_per_s": seen[0] / elapsed if elapsed else 0.0,
    }
