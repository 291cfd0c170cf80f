"""Sessions and sign-in codes in PostgreSQL, as several gateway replicas share them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from baton_gateway.sessions import SESSIONS_SQL, PostgresSessions, digest
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier
from psycopg_pool import AsyncConnectionPool

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[tuple[AsyncConnectionPool[Any], str]]:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA {s}").format(s=Identifier(schema)))
        for statement in SESSIONS_SQL.split(";"):
            conn.execute(SQL(statement).format(s=Identifier(schema)))
    kwargs = {"row_factory": dict_row, "autocommit": True}
    async with AsyncConnectionPool(database_url, max_size=12, kwargs=kwargs) as opened:
        yield opened, schema
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("DROP SCHEMA {s} CASCADE").format(s=Identifier(schema)))


async def test_a_code_is_redeemed_once_across_replicas(
    pool: tuple[AsyncConnectionPool[Any], str],
) -> None:
    replicas = [PostgresSessions(*pool) for _ in range(10)]  # ten gateways, one table
    code, _ = await replicas[0].new_code("key-1")
    won = await asyncio.gather(*(r.redeem(code) for r in replicas))
    assert won.count("key-1") == 1 and won.count(None) == 9


async def test_sessions_are_shared_hashed_and_end_everywhere(
    pool: tuple[AsyncConnectionPool[Any], str],
) -> None:
    one, other = PostgresSessions(*pool), PostgresSessions(*pool)
    session_id, _ = await one.new_session("key-2")
    assert await other.lookup(session_id) == "key-2"
    async with pool[0].connection() as conn:
        rows = await (
            await conn.execute(
                SQL("SELECT * FROM {s}.gateway_sessions").format(s=Identifier(pool[1]))
            )
        ).fetchall()
    assert [r["secret_sha256"] for r in rows] == [digest(session_id)]  # never the id itself
    await one.end(session_id)
    other._cache.clear()  # past CACHE_S
    assert await other.lookup(session_id) is None


async def test_an_expired_code_opens_nothing(pool: tuple[AsyncConnectionPool[Any], str]) -> None:
    sessions = PostgresSessions(*pool)
    past = datetime.now(UTC) - timedelta(seconds=1)
    await sessions._put(digest("old-code"), "code", "key-3", past, past - timedelta(minutes=10))
    assert await sessions.redeem("old-code") is None
