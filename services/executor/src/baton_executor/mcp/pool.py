"""A worker's open sessions to MCP servers: a few per server, each held by a task that owns its
context (the SDK's sessions live in one task). A session whose server died (a call that lost
its connection) is closed and a new one started by the next call: a stdio server is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from baton_common.egress import EgressGuard

from baton_executor.mcp.connect import LIST_TIMEOUT_S, Endpoint, connected

if TYPE_CHECKING:
    from mcp import Client

log = logging.getLogger(__name__)
SESSIONS_PER_SERVER = 2  # calls share a session (MCP multiplexes); two spread a busy server


class Session:
    """One session, open until ``close`` or until its server goes away."""

    def __init__(self, endpoint: Endpoint, guard: EgressGuard) -> None:
        self.endpoint, self.guard = endpoint, guard
        self.client: Client | None = None
        self.busy = 0
        self.dead = False
        self.retired = False
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Session:
        self._task = asyncio.create_task(self._hold())
        await asyncio.wait_for(self._ready.wait(), LIST_TIMEOUT_S)
        if self.client is None:
            raise ConnectionError(f"could not open a session: {self._error}")
        return self

    async def _hold(self) -> None:
        try:
            async with connected(self.endpoint, self.guard) as client:
                self.client = client
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
        finally:
            self.dead = True
            self._ready.set()

    async def close(self) -> None:
        self.dead = True
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 5)


class SessionPool:
    """Sessions by server (keyed by the server's id and version: a re-registered server gets
    fresh ones)."""

    def __init__(self, size: int = SESSIONS_PER_SERVER) -> None:
        self.size = size
        self.sessions: dict[Any, list[Session]] = {}
        self.started = 0  # sessions opened (a restarted server counts again)
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def session(self, key: Any, endpoint: Endpoint, guard: EgressGuard) -> Any:
        """The least busy live session to the server (a new one while fewer than ``size``)."""
        chosen = await self._choose(key, endpoint, guard)
        chosen.busy += 1
        try:
            yield chosen
        finally:
            chosen.busy -= 1
            if chosen.retired and chosen.busy == 0:
                await chosen.close()

    async def _choose(self, key: Any, endpoint: Endpoint, guard: EgressGuard) -> Session:
        async with self._lock:
            await self._retire(key)
            live = [s for s in self.sessions.get(key, []) if not s.dead]
            idle = [s for s in live if s.busy == 0]
            if idle or len(live) >= self.size:
                self.sessions[key] = live
                return min(idle or live, key=lambda s: s.busy)
            fresh = await Session(endpoint, guard).open()
            self.started += 1
            self.sessions[key] = [*live, fresh]
            return fresh

    async def _retire(self, key: Any) -> None:
        """Close the sessions of the same server's earlier versions (keys are (id, version)):
        a re-listed or re-registered server is reached as it is now."""
        for older in [k for k in self.sessions if k != key and k[0] == key[0]]:
            for session in self.sessions.pop(older):
                session.retired = True  # a busy one closes when its call ends
                if session.busy == 0:
                    await session.close()

    async def discard(self, session: Session) -> None:
        """A session whose server stopped answering: closed, never chosen again."""
        await session.close()

    async def close(self) -> None:
        for sessions in self.sessions.values():
            for session in sessions:
                await session.close()
        self.sessions.clear()
