"""An endpoint's rate limit on real PostgreSQL: two replicas' limiters share one bucket (the
rate is the endpoint's, not each replica's), concurrent takes never hand out more tokens than
the bucket holds, and the bucket refills with the database's clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from baton_common.settings import Settings
from baton_common.store import ensure_schema
from baton_webhook.ratelimit import SharedRateLimit
from psycopg.sql import SQL

pytestmark = pytest.mark.integration


@pytest.fixture
async def replicas(settings: Settings) -> AsyncIterator[tuple[SharedRateLimit, SharedRateLimit]]:
    """The limiters of two webhook replicas on one database."""
    await asyncio.to_thread(ensure_schema, settings.database_url, settings.db_schema)
    pair = (
        SharedRateLimit(settings.database_url, settings.db_schema),
        SharedRateLimit(settings.database_url, settings.db_schema),
    )
    for limiter in pair:
        await limiter.open()
    yield pair
    for limiter in pair:
        await limiter.close()


async def test_two_replicas_count_one_rate(replicas: tuple[SharedRateLimit, ...]) -> None:
    a, b = replicas
    # 2 a minute: a token every 30 s, so none comes back while this runs
    waits = [await (a, b)[i % 2].retry_after("ep-1", 2) for i in range(6)]
    assert waits[:2] == [0.0, 0.0]
    assert all(0 < w <= 30 for w in waits[2:]), waits  # each replica refuses the third
    assert await b.retry_after("ep-2", 2) == 0.0  # another endpoint has its own bucket
    assert await a.retry_after("ep-1", None) == 0.0  # no limit: nothing is counted


async def test_concurrent_takes_get_exactly_the_bucket(
    replicas: tuple[SharedRateLimit, ...],
) -> None:
    a, b = replicas
    takes = [(a, b)[i % 2].retry_after("burst", 5) for i in range(20)]
    waits = await asyncio.gather(*takes)
    assert sum(1 for w in waits if w == 0) == 5


async def test_the_bucket_refills_with_time(
    settings: Settings, replicas: tuple[SharedRateLimit, ...]
) -> None:
    a, b = replicas
    assert [await a.retry_after("slow", 2) for _ in range(3)][2] > 0
    # 30 s on the database's clock (moved back rather than waited for) give one token back
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        await conn.execute(
            SQL("UPDATE {} SET at = at - interval '30 seconds' WHERE endpoint = 'slow'").format(
                a.table
            )
        )
        await conn.commit()
    assert await b.retry_after("slow", 2) == 0.0
    assert await a.retry_after("slow", 2) > 0


async def test_a_connection_the_server_closed_is_replaced(
    settings: Settings, replicas: tuple[SharedRateLimit, ...]
) -> None:
    """A database restart closes the pooled connections: the next check still answers."""
    a, _ = replicas
    assert await a.retry_after("restart", 5) == 0.0
    async with await psycopg.AsyncConnection.connect(settings.database_url) as conn:
        cursor = await conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND query LIKE %s",
            (f"%{settings.db_schema}%webhook_rate_buckets%",),
        )
        assert (await cursor.fetchone() or (0,))[0] >= 1  # both replicas' open connections
    assert await a.retry_after("restart", 5) == 0.0
