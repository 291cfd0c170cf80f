"""The outbox relay: follows a store's notification log and publishes what it has not published yet.

The store commit comes first; publishing follows. The relay remembers the last position it saw
acknowledged by JetStream, so after a crash it re-publishes from there: the events in between
carry ``Nats-Msg-Id = event_id`` and the server drops the copies. Nothing committed is lost and
nothing is delivered twice.

One relay per store follows its log at a time (a PostgreSQL advisory lock elects it). It is no
leader on the step path: every other replica publishes what it commits itself, at once, as long
as that keeps each aggregate's events in order on the stream (``OwnCommits``); the elected relay
publishes the rest from the log, and its copies of what a replica published are dropped by the
server (``Nats-Msg-Id``). Every commit to the store wakes the relay of the committing process
(``store.on_events``); a replica that leaves events to the log (not its own to publish, or
committed by a path that did not hand them over) wakes the elected relay with a NOTIFY, which it
LISTENs for. A slow poll (``BATON_SAFETY_POLL``) stands behind both: a lost notification delays
events, it never loses them. An idle relay does nothing else: it used to read the store four
times a second.

An event the bus refuses for good (larger than the server's max_payload, or than the stream's
max_msg_size) never stalls the relay: it is parked on the dead-letter stream with its reason (``baton deadletters``),
a notice of it (``relay.event_parked``) is committed to the store and published like any event,
and the relay moves on. The executor fails the execution the notice names. Transient failures
(no server, a timeout) are retried from the same position, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import OrderedDict

import psycopg
from nats.errors import MaxPayloadError
from nats.js.errors import BadRequestError

from baton_common import contracts as c
from baton_common import perf
from baton_common.bus import Bus
from baton_common.leader import Leadership
from baton_common.limits import human
from baton_common.store import (
    Commit,
    ConcurrencyConflict,
    MemoryEventStore,
    PostgresEventStore,
    commit_of,
    notified,
    run_sync,
)

log = logging.getLogger(__name__)
# Refusals no retry can change: the event is larger than the server takes (checked before
# sending), or the stream refuses its size (JetStream 10054, message; 10097, headers). Anything
# else (no server, a timeout, 503, a stream misconfigured) is retried as before: parking would
# fail every execution for what an operator can mend.
SIZE_REFUSALS = {10054, 10097}
_ENVELOPE = ("event_id", "type", "workspace_id", "aggregate_id", "correlation_id")
SAVE_EVERY_S = 0.5
LEAD_RETRY_S = 2.0  # how often a replica that does not follow the log asks to
HOLD_MAX_S = 0.05  # the longest a run of commits keeps its events from the bus


class Relay:
    """Publishes a store's events to JetStream in notification order, exactly once."""

    def __init__(
        self,
        store: PostgresEventStore | MemoryEventStore,
        bus: Bus,
        *,
        batch: int = 1000,
        poll_s: float | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.batch = batch
        self.poll_s = poll_s or bus.settings.safety_poll_s
        self.name = f"{store.name}->{bus.settings.stream}"
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None  # the leader's LISTEN
        self._telling: asyncio.Task[None] | None = None  # a non-leader's NOTIFY in flight
        self._tell_again = False
        self.leading = not isinstance(store, PostgresEventStore)  # one process: no election
        store.on_events = self.kick
        self.published = 0
        self.parked = 0  # events the bus refused for good, parked on the dead-letter stream
        self._leader: Leadership | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.position: int | None = None  # last published, in memory; saved every SAVE_EVERY_S
        self._saved = 0
        self._saved_at = 0.0
        self._fresh: list[tuple[int, bytes]] = []  # just committed in this process
        self._from_memory = False  # the last rows published were taken from ``_fresh``
        # While commits follow one another (a chain of pure steps), their events are published
        # together when the run ends (or after HOLD_MAX_S): one round of acks and deliveries
        # instead of one per commit, out of the way of the commits themselves.
        self._held = 0
        self._unheld = asyncio.Event()
        self.own = OwnCommits()
        self._kicked = False  # a commit woke this (non-leading) relay without handing its rows

    def kick(self) -> None:
        """Something was committed: publish now instead of at the next poll (any thread)."""
        self._in_loop([])

    def committed(self, rows: list[tuple[int, bytes]]) -> None:
        """Events this process just committed: publish them straight from memory (any thread).

        The store stays the source of truth: when these do not follow on from what was
        published last (another writer committed in between), the relay reads the store."""
        if rows:
            self._in_loop(rows)

    def _in_loop(self, rows: list[tuple[int, bytes]]) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake_with(rows)
        else:
            loop.call_soon_threadsafe(self._wake_with, rows)

    def _wake_with(self, rows: list[tuple[int, bytes]]) -> None:
        if not self.leading and not rows:
            self._kicked = True  # ``_publish_own`` tells the leader unless the rows follow
        self._fresh.extend(rows)
        self._wake.set()

    def _tell_leader(self) -> None:
        """The relay of another process publishes this store: notify it (one NOTIFY at a
        time; commits meanwhile make one more)."""
        if self._telling is not None and not self._telling.done():
            self._tell_again = True
            return
        self._telling = asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        assert isinstance(self.store, PostgresEventStore)
        self._tell_again = True
        while self._tell_again:
            self._tell_again = False
            try:
                await self.store.notify_async()
            except Exception as exc:  # the leader's poll finds the events all the same
                log.info("relay %s: could not notify the leading relay: %s", self.name, exc)
                return

    def hold(self) -> None:
        """Commits follow: publish what they commit when ``release`` is called (event loop)."""
        self._held += 1
        self._unheld.clear()

    def release(self) -> None:
        self._held = max(0, self._held - 1)
        if not self._held:
            self._unheld.set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._run(), name=f"relay:{self.name}")

    async def stop(self) -> None:
        for task in (self._task, self._listener, self._telling):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        with contextlib.suppress(Exception):
            await self._save(force=True)
        if self._leader is not None:
            self._leader.release()

    async def _run(self) -> None:
        asked = time.monotonic()
        while not await run_sync(self._try_lead):
            while time.monotonic() - asked < LEAD_RETRY_S:
                await self._publish_own(asked + LEAD_RETRY_S - time.monotonic())
            asked = time.monotonic()
        self.leading = True
        log.info("relay %s leading", self.name)
        if isinstance(self.store, PostgresEventStore):
            self._listener = asyncio.create_task(self._listen(), name=f"relay listen:{self.name}")
        while True:
            try:
                while await self.publish_pending() and not self._caught_up():
                    pass
            except Exception as exc:  # bus or store away: keep the position, try again
                log.warning(
                    "relay %s: %r; retrying",
                    self.name,
                    exc,
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )
                await asyncio.sleep(0.5)
                continue
            with contextlib.suppress(Exception):
                await self._save()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._wait_s())
            if self._held:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._unheld.wait(), HOLD_MAX_S)
            self._wake.clear()

    async def _publish_own(self, wait_s: float) -> None:
        """Not following the log: publish what this process committed since the last call,
        those that keep their aggregate's order (``OwnCommits``); the others wait for the relay
        that follows the log. A failure leaves everything after it to that relay as well."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(0.0, wait_s))
        if self._held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unheld.wait(), HOLD_MAX_S)
        self._wake.clear()
        committed, self._fresh = self._fresh, []
        kicked, self._kicked = self._kicked, False
        rows = self.own.take(committed)
        # Some are not this process's to publish, or a commit came without its rows: the
        # relay that follows the log reads them.
        if len(rows) < len(committed) or (kicked and not committed):
            self._tell_leader()
        if not rows:
            return
        try:
            with perf.PUBLISH_SECONDS.labels(self.name).time():
                await self.bus.publish_raw(
                    [state for _, state in rows], self.store.name, [p for p, _ in rows]
                )
        except Exception as exc:  # too large, bus away: the log's follower publishes them
            self.own.forget()
            self._tell_leader()
            log.info(
                "relay %s: %d of its own events left to the log (%r)", self.name, len(rows), exc
            )
            return
        self.published += len(rows)

    async def _listen(self) -> None:
        """Other replicas' commits wake the relay (their NOTIFY), heard on the session that
        holds its leadership; should that fail, on a connection of its own, made again as
        needed."""
        assert isinstance(self.store, PostgresEventStore) and self._leader is not None
        try:
            conn = await run_sync(self._leader.listen, self.store.channel)
            self._wake.set()  # what was committed before it listened
            await notified(conn.pgconn, self._wake.set)
        except psycopg.Error as exc:
            log.info("relay %s: listening on its leader's session failed: %s", self.name, exc)
        await self.store.listen(self._wake.set)

    async def publish_pending(self) -> int:
        """Publish the next events after the last published position; returns how many."""
        t0 = time.perf_counter()
        if self.position is None:
            self.position = self._saved = await run_sync(self.store.relay_position, self.name)
        rows = self._take_fresh(self.position)
        self._from_memory = bool(rows)
        if not rows:
            rows = await self.store.raw_notifications_async(self.position, self.batch)
        if not rows:
            return 0
        with perf.PUBLISH_SECONDS.labels(self.name).time():
            try:
                await self.bus.publish_raw(
                    [state for _, state in rows], self.store.name, [p for p, _ in rows]
                )
            except (MaxPayloadError, BadRequestError, TimeoutError) as exc:
                if not (refused(exc) or isinstance(exc, TimeoutError)):
                    raise
                # One by one, each ack awaited: a refusal by the stream shows only so (a batch
                # of them just times out), and a bus that is away raises at the first one.
                await self._publish_each(rows)
        self.position = rows[-1][0]
        self.published += len(rows)
        log.debug(
            "relay %s: published %d in %.1f ms",
            self.name,
            len(rows),
            (time.perf_counter() - t0) * 1000,
        )
        return len(rows)

    async def _publish_each(self, rows: list[tuple[int, bytes]]) -> None:
        """The batch was refused or timed out: publish one by one and park each event the bus
        refuses for good, so the relay moves past it. Anything else (no server, a timeout)
        raises: the position stays after the last event published, and the loop retries."""
        for position, state in rows:
            try:
                await self.bus.publish_raw_one(state, self.store.name, position)
            except (MaxPayloadError, BadRequestError) as exc:
                if not refused(exc):
                    raise
                await self._park(position, state, exc)
            self.position = position

    async def _park(self, position: int, state: bytes, exc: Exception) -> None:
        """Park a refused event and record a notice of it in the store: the relay publishes
        the notice like any event, and the executor fails the execution it belongs to."""
        event = json.loads(state)  # the whole of it, for its envelope: a rare path
        head = {k: event.get(k) for k in _ENVELOPE} | {"position": position, "size": len(state)}
        reason = self._refusal(exc, event["type"], len(state))
        await self.bus.park_refused(head, reason, self.name)
        notice_id = c.parked_notice_id(event["event_id"])
        notice = c.EventParked(
            event_id=notice_id,
            aggregate_id=notice_id,
            aggregate_version=1,
            workspace_id=event.get("workspace_id") or "default",
            correlation_id=event.get("correlation_id"),
            causation_id=event["event_id"],
            parked_event_id=event["event_id"],
            parked_type=event["type"],
            parked_aggregate_id=event.get("aggregate_id"),
            position=position,
            size=len(state),
            reason=reason,
            relay=self.name,
        )
        with contextlib.suppress(ConcurrencyConflict):  # recorded by an attempt before a crash
            await commit_of(self.store, Commit(events=[notice]))
        self.parked += 1
        self._wake.set()  # the notice is in the store now: publish it next

    def _refusal(self, exc: Exception, event_type: str, size: int) -> str:
        if isinstance(exc, MaxPayloadError):  # checked before sending (Bus.check_fits)
            limit, what = self.bus.nc.max_payload, "NATS max_payload"
            if self.bus.max_msg_size is not None and self.bus.max_msg_size < limit:
                limit, what = self.bus.max_msg_size, "the event stream's max_msg_size"
            why = f"larger than the bus accepts ({human(limit)}, {what})"
        else:
            why = f"refused by the bus ({getattr(exc, 'description', None) or exc})"
        return f"{event_type} is {human(size)}, {why}: parked, not published"

    def _caught_up(self) -> bool:
        """What was just published came from memory and nothing known is left: no need to read
        the store for more (another replica's commits come with a notification)."""
        return self._from_memory and not self._fresh

    def _take_fresh(self, position: int) -> list[tuple[int, bytes]]:
        """The run of just-committed events that follows ``position`` without a gap."""
        fresh = sorted(r for r in self._fresh if r[0] > position)
        taken: list[tuple[int, bytes]] = []
        for row in fresh:
            if row[0] != position + len(taken) + 1 or len(taken) >= self.batch:
                break
            taken.append(row)
        self._fresh = fresh[len(taken) :] if taken else [r for r in fresh if r[0] > position]
        return taken

    def _wait_s(self) -> float:
        """Until the next safety poll, or sooner when the position published is not saved yet."""
        if self.position is None or self.position == self._saved:
            return self.poll_s
        return min(self.poll_s, max(0.0, self._saved_at + SAVE_EVERY_S - time.monotonic()))

    async def _save(self, *, force: bool = False) -> None:
        """Persist the position now and then: after a crash, at most that much is re-published
        (and dropped by JetStream's duplicate window)."""
        if self.position is None or self.position == self._saved:
            return
        if force or time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            await run_sync(self.store.set_relay_position, self.name, self.position)
            self._saved, self._saved_at = self.position, time.monotonic()

    def _try_lead(self) -> bool:
        if not isinstance(self.store, PostgresEventStore):
            return True
        if self._leader is None:
            params = dict(self.store.datastore.pool.kwargs or {})  # type: ignore[arg-type]
            url = psycopg.conninfo.make_conninfo(
                **{k: v for k, v in params.items() if k != "row_factory"}
            )
            self._leader = Leadership(url, f"relay:{self.store.datastore.schema}:{self.name}")
        return self._leader.try_acquire()


_AGGREGATE = re.compile(rb'"aggregate_id":"([0-9a-f-]{36})","aggregate_version":(\d+),')


class OwnCommits:
    """Which of a process's just-committed events it may publish itself, before the relay that
    follows the log: an event whose aggregate's previous event this process published too (or
    that has none). So the stream keeps each aggregate's order: that predecessor went before it
    on the same connection, and an event that follows another process's goes in log order."""

    def __init__(self, kept: int = 100_000) -> None:
        self.kept = kept
        self._last: OrderedDict[bytes, int] = OrderedDict()  # aggregate -> version published here

    def take(self, rows: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
        """The rows to publish now, in the order they were committed."""
        taken = []
        for row in rows:
            found = _AGGREGATE.search(row[1], 0, 600)
            if found is None:
                continue
            aggregate, version = found[1], int(found[2])
            if version == 1 or self._last.get(aggregate) == version - 1:
                self._last[aggregate] = version
                self._last.move_to_end(aggregate)
                taken.append(row)
            else:
                self._last.pop(aggregate, None)
        while len(self._last) > self.kept:
            self._last.popitem(last=False)
        return taken

    def forget(self) -> None:
        """What was taken may not have reached the stream: nothing may follow it directly."""
        self._last.clear()


def refused(exc: Exception) -> bool:
    """Whether the bus refused an event for good (its size), not for now."""
    if isinstance(exc, MaxPayloadError):
        return True
    return isinstance(exc, BadRequestError) and exc.err_code in SIZE_REFUSALS
