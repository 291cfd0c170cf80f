"""Wiring of the projector process, and the rebuild that ``baton projections rebuild`` runs."""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from baton_common.archive import open_archive
from baton_common.archived import resummarise
from baton_common.bus import Bus
from baton_common.consumer import Puller
from baton_common.contracts import registry
from baton_common.events import EventDecodeError
from baton_common.leader import Leadership
from baton_common.retention import RetentionSettings, sweep
from baton_common.service import Runtime, every
from baton_common.settings import Settings
from baton_common.store import run_sync
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import FetchTimeoutError

from baton_projector.access import AccessProjection
from baton_projector.agents import AgentProjection
from baton_projector.approvals import ApprovalProjection
from baton_projector.context import WorkspaceContextProjection
from baton_projector.handlers import projector_consumer
from baton_projector.observed import observed_projections
from baton_projector.plans import PlanProjection
from baton_projector.projections import ExecutionProjection, create_tables

log = logging.getLogger(__name__)


def open_views(settings: Settings) -> psycopg.Connection[Any]:
    conn = psycopg.connect(settings.database_url, autocommit=True)
    create_tables(conn, settings.db_schema)
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
        runtime.spawn(
            sweeper(settings, runtime), "retention"
        )  # the leader sweeps, replicas stand by

    runtime.spawn(lead(), "leadership")
    await runtime.serve_forever()
    for conn in conns:
        conn.close()
    leader.release()


def sweeper(settings: Settings, runtime: Runtime) -> Any:
    """Every ``BATON_ARCHIVE_INTERVAL`` seconds: archive and remove the finished executions past
    their workspace's retention period (``retention.sweep``; ``baton archive run`` sweeps now)."""
    retention = RetentionSettings()
    archive = open_archive(settings.data_dir)
    swept = [0]
    runtime.metrics["executions_archived_total"] = lambda: float(swept[0])

    async def once() -> None:
        done = await run_sync(sweep, settings.database_url, settings.db_schema, archive, retention)
        swept[0] += done.archived
        if done.archived or done.failed:
            log.info("retention: %d archived, %d failed", done.archived, len(done.failed))

    return every(retention.interval_s, once, "retention sweep")


async def rebuild(settings: Settings, batch: int = 2000) -> dict[str, float]:
    """Drop the read models and fold every event in the stream into them again, atomically."""
    bus = await Bus.connect(settings, "rebuild")
    conn = await run_sync(open_views, settings)
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
    started = time.perf_counter()
    last = (await bus.js.stream_info(settings.stream)).state.last_seq
    sub = await bus.js.pull_subscribe(
        f"{settings.subject_root}.>",
        stream=settings.stream,
        config=api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE, inactive_threshold=60.0, max_waiting=1
        ),
    )
    puller = Puller(sub)
    seen = skipped = 0
    try:
        with conn.transaction():
            await run_sync(projection.truncate, conn)
            await run_sync(access.truncate, conn)
            await run_sync(approvals.truncate, conn)
            for more in extra:
                await run_sync(more.truncate, conn)
            seq = 0
            while seq < last:
                try:
                    msgs = await puller.fetch(batch, timeout=2.0)
                except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                    break
                events = []
                for m in msgs:
                    seq = m.metadata.sequence.stream
                    if seq > last:
                        break
                    try:
                        events.append(registry().decode(m.data))
                    except EventDecodeError:
                        skipped += 1  # parked when it was live; a view never saw it either
                seen += len(events)
                await run_sync(projection.apply_batch, conn, events)
                await run_sync(access.apply_batch, conn, events)
                await run_sync(approvals.apply_batch, conn, events)
                for more in extra:
                    await run_sync(more.apply_batch, conn, events)
            # archived executions are summaries again (their detail is in the archive)
            archive = open_archive(settings.data_dir)
            await run_sync(resummarise, conn, settings.db_schema, archive)
    finally:
        await sub.unsubscribe()
        await bus.close()
        conn.close()
    elapsed = time.perf_counter() - started
    return {
        "events": seen,
        "applied": projection.applied,
        "skipped": skipped,
        "seconds": elapsed,
        "events_per_s": seen / elapsed if elapsed else 0.0,
    }
