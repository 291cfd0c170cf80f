"""Leadership by PostgreSQL advisory lock: one process of a kind does the work, others stand by.

The lock lives as long as the session that took it, so a process that dies (even by kill -9)
hands leadership over as soon as PostgreSQL notices the connection is gone.
"""

from __future__ import annotations

import asyncio
import zlib

import psycopg
from psycopg.sql import SQL, Identifier


class Leadership:
    """Try to lead ``name`` within a database; keep the lock until ``release``."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.key = zlib.crc32(name.encode())
        self._conn: psycopg.Connection | None = None

    def try_acquire(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.url, autocommit=True)
        row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        return bool(row and row[0])

    def listen(self, channel: str) -> psycopg.Connection:
        """LISTEN on the session that holds the lock (held: no connection more for it); its
        notifications are read off its socket (``store.notified``)."""
        assert self._conn is not None, "lead first"
        self._conn.execute(SQL("LISTEN {}").format(Identifier(channel)))
        return self._conn

    async def acquire(self, retry_s: float = 1.0) -> None:
        while not await asyncio.to_thread(self.try_acquire):
            await asyncio.sleep(retry_s)

    def release(self) -> None:
        if self._conn is not None:
            try:  # unlock explicitly: a closed session frees the lock, but not at once
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            except psycopg.Error:
                pass
            self._conn.close()
            self._conn = None
