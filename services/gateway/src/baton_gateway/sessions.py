"""Dashboard sessions and one-time sign-in codes, kept server-side so a cookie or a link never
carries an API key.

A session id or a code is 256 random bits, handed out once; the table keeps only its SHA-256
(a leaked table opens no session), the key it stands for (its id) and its expiry. The rows
live in PostgreSQL, so every gateway replica knows every session and a code is consumed once
across all of them (``DELETE … RETURNING``). A session also ends as soon as its key is revoked
or expires: the key is checked again on every request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from psycopg.sql import SQL, Identifier
from psycopg_pool import AsyncConnectionPool

SESSION_TTL = timedelta(hours=12)
CODE_TTL = timedelta(minutes=10)
CACHE_S = 1.0  # a session ended on another replica is refused here within this
Kind = Literal["session", "code"]

SESSIONS_SQL = """
CREATE TABLE IF NOT EXISTS {s}.gateway_sessions (
    secret_sha256 text PRIMARY KEY,
    kind text NOT NULL,
    principal text NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS gateway_sessions_expiry ON {s}.gateway_sessions (expires_at)
"""


def digest(secret: str) -> str:
    """A fast hash is enough: the secrets are random, 256 bits, not passwords."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Sessions:
    """Sessions and sign-in codes; the storage is a subclass's (PostgreSQL, or memory in tests)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, str]] = {}

    async def new_code(self, principal: str) -> tuple[str, datetime]:
        """A sign-in code for ``principal`` (a key reference), valid once until it expires."""
        return await self._new("code", principal, CODE_TTL)

    async def redeem(self, code: str) -> str | None:
        """The principal of an unused, unexpired code, which is used up by this call."""
        return await self._take(digest(code), datetime.now(UTC))

    async def new_session(self, principal: str) -> tuple[str, datetime]:
        return await self._new("session", principal, SESSION_TTL)

    async def lookup(self, session_id: str) -> str | None:
        """The principal of a live session (remembered for ``CACHE_S``)."""
        key = digest(session_id)
        hit = self._cache.get(key)
        if hit and time.monotonic() - hit[0] < CACHE_S:
            return hit[1]
        principal = await self._get(key, datetime.now(UTC))
        if principal is None:
            self._cache.pop(key, None)
        else:
            self._cache[key] = (time.monotonic(), principal)
        return principal

    async def end(self, session_id: str) -> None:
        key = digest(session_id)
        self._cache.pop(key, None)
        await self._delete(key)

    async def _new(self, kind: Kind, principal: str, ttl: timedelta) -> tuple[str, datetime]:
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await self._put(digest(secret), kind, principal, now + ttl, now)
        return secret, now + ttl

    # --- storage ----------------------------------------------------------------------------------

    async def _put(
        self, key: str, kind: Kind, principal: str, expires_at: datetime, now: datetime
    ) -> None:
        raise NotImplementedError

    async def _take(self, key: str, now: datetime) -> str | None:
        raise NotImplementedError

    async def _get(self, key: str, now: datetime) -> str | None:
        raise NotImplementedError

    async def _delete(self, key: str) -> None:
        raise NotImplementedError


class MemorySessions(Sessions):
    """One process's sessions: for unit tests only (replicas would not share them)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[Kind, str, datetime]] = {}

    async def _put(
        self, key: str, kind: Kind, principal: str, expires_at: datetime, now: datetime
    ) -> None:
        self.rows[key] = (kind, principal, expires_at)

    async def _take(self, key: str, now: datetime) -> str | None:
        row = self.rows.get(key)
        if row is None or row[0] != "code":
            return None
        del self.rows[key]
        return row[1] if row[2] > now else None

    async def _get(self, key: str, now: datetime) -> str | None:
        row = self.rows.get(key)
        return row[1] if row and row[0] == "session" and row[2] > now else None

    async def _delete(self, key: str) -> None:
        self.rows.pop(key, None)


class PostgresSessions(Sessions):
    """Sessions in the ``gateway_sessions`` table, shared by every gateway replica (through
    the read models' pool: autocommit, rows as dicts)."""

    def __init__(self, pool: AsyncConnectionPool[Any], schema: str) -> None:
        super().__init__()
        self.pool, self.s = pool, Identifier(schema)

    async def _run(self, statement: str, params: tuple[Any, ...]) -> list[Any]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(SQL(statement).format(s=self.s), params)
            return await cur.fetchall() if cur.description else []

    async def _put(
        self, key: str, kind: Kind, principal: str, expires_at: datetime, now: datetime
    ) -> None:
        # Expired rows go as new ones come: the table holds only live sessions and codes.
        await self._run("DELETE FROM {s}.gateway_sessions WHERE expires_at <= %s", (now,))
        await self._run(
            "INSERT INTO {s}.gateway_sessions (secret_sha256, kind, principal, expires_at) "
            "VALUES (%s, %s, %s, %s)",
            (key, kind, principal, expires_at),
        )

    async def _take(self, key: str, now: datetime) -> str | None:
        rows = await self._run(
            "DELETE FROM {s}.gateway_sessions WHERE secret_sha256 = %s AND kind = 'code' "
            "RETURNING principal, expires_at",
            (key,),
        )
        return str(rows[0]["principal"]) if rows and rows[0]["expires_at"] > now else None

    async def _get(self, key: str, now: datetime) -> str | None:
        rows = await self._run(
            "SELECT principal FROM {s}.gateway_sessions "
            "WHERE secret_sha256 = %s AND kind = 'session' AND expires_at > %s",
            (key, now),
        )
        return str(rows[0]["principal"]) if rows else None

    async def _delete(self, key: str) -> None:
        await self._run("DELETE FROM {s}.gateway_sessions WHERE secret_sha256 = %s", (key,))
