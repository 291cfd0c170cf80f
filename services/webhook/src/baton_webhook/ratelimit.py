"""An endpoint's ``rate_per_minute``, counted once across the webhook service's replicas.

A token bucket per endpoint (it holds ``rate_per_minute`` tokens and refills at that rate), kept
in one PostgreSQL row and taken by one atomic upsert. Why PostgreSQL and not NATS KV:
- the service already commits every accepted webhook there, so the check is one more short
  statement to a server it needs anyway, on the path that then commits the receipt;
- the upsert is atomic under the row's lock: two replicas taking tokens of one endpoint at once
  queue for a moment. A KV bucket needs a read and a compare-and-set, retried every time two
  replicas race for the same endpoint, which is exactly what a burst is;
- the database's clock (``clock_timestamp()``) measures the refill, so replicas whose clocks
  differ (or a test process whose clock is moved) still agree on one bucket.

Each replica alone allowing the rate gave a sender N times the rate with N replicas.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg.sql import SQL, Identifier
from psycopg_pool import AsyncConnectionPool, PoolTimeout

TABLE = "webhook_rate_buckets"
# The tokens the bucket holds after the time since the last request refilled it (never more
# than the rate; a negative interval, from a statement that took its clock before it waited for
# the row, refills nothing).
_REFILLED = (
    "LEAST(%(per_minute)s::float8, b.tokens + GREATEST(0, extract(epoch FROM EXCLUDED.at - b.at)"
    "::float8) * %(per_minute)s::float8 / 60)"
)
_TAKE = (
    "INSERT INTO {t} AS b (endpoint, tokens, at, granted)"
    " VALUES (%(endpoint)s, %(per_minute)s::float8 - 1, clock_timestamp(), true)"
    " ON CONFLICT (endpoint) DO UPDATE SET"
    f" tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END,"
    f" granted = {_REFILLED} >= 1,"
    " at = GREATEST(b.at, EXCLUDED.at)"
    " RETURNING granted, tokens"
)


class RateLimit(Protocol):
    async def retry_after(self, endpoint: str, per_minute: int | None) -> float:
        """0 if a request may pass now (and takes its token), else the seconds to wait."""
        ...


class SharedRateLimit:
    """The buckets in PostgreSQL, shared by every replica of the webhook service."""

    def __init__(self, url: str, schema: str) -> None:
        self.table = SQL("{}.{}").format(Identifier(schema), Identifier(TABLE))
        # A few connections: checks of different endpoints need not wait for each other. A
        # database that does not answer is a 503 within seconds, not a sender left hanging.
        self.pool = AsyncConnectionPool(
            url, min_size=1, max_size=4, open=False, timeout=10, kwargs={"autocommit": True}
        )
        self._take = SQL(_TAKE).format(t=self.table)

    async def open(self) -> None:
        await self.pool.open(wait=True)
        async with self.pool.connection() as conn:
            await conn.execute(
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (endpoint text PRIMARY KEY,"
                    " tokens double precision NOT NULL, at timestamptz NOT NULL,"
                    " granted boolean NOT NULL)"
                ).format(self.table)
            )

    async def close(self) -> None:
        await self.pool.close()

    async def retry_after(self, endpoint: str, per_minute: int | None) -> float:
        if not per_minute:
            return 0.0
        params = {"endpoint": endpoint, "per_minute": per_minute}
        try:
            granted, tokens = await self._take_one(params)
        except PoolTimeout:
            raise  # no connection within the pool's timeout: the caller answers 503
        except psycopg.OperationalError:  # a pooled connection the server closed (a restart)
            granted, tokens = await self._take_one(params)
        return 0.0 if granted else (1 - float(tokens)) / (per_minute / 60.0)

    async def _take_one(self, params: dict[str, Any]) -> tuple[bool, float]:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(self._take, params)).fetchone()
        assert row is not None  # an upsert always returns its row
        return bool(row[0]), float(row[1])


@dataclass
class LocalRateLimit:
    """The same bucket in this process (the in-memory store of unit tests has no database)."""

    buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    async def retry_after(self, endpoint: str, per_minute: int | None) -> float:
        return self.take(endpoint, per_minute, time.monotonic())

    def take(self, key: str, per_minute: int | None, now: float) -> float:
        if not per_minute:
            return 0.0
        rate = per_minute / 60.0
        tokens, at = self.buckets.get(key, (float(per_minute), now))
        tokens = min(float(per_minute), tokens + (now - at) * rate)
        if tokens >= 1:
            self.buckets[key] = (tokens - 1, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1 - tokens) / rate
