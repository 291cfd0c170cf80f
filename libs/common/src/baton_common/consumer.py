"""Durable pull consumers with exactly-once effects.

For each fetched batch: decode every message (a message that can never be decoded is parked on
the dead-letter stream with its reason), drop the ones the inbox says were handled, hand the rest
to the handler, and commit the handler's events together with the inbox records in ONE
transaction. Only then are the messages acked. A crash anywhere before the commit redelivers;
a crash after it redelivers a message the inbox already knows, which is acked and skipped.

A handler error isolates the message that caused it (the batch is retried one by one); a
transient error is nacked with exponential backoff; an ``Unhandleable`` error, or too many
deliveries, parks the message. Nothing is dropped silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import APIError, FetchTimeoutError
from opentelemetry import context as otel_context

from baton_common import heap, logs, perf, tracing
from baton_common.bus import Bus
from baton_common.contracts import registry
from baton_common.events import Event, EventDecodeError
from baton_common.relay import Relay
from baton_common.store import (
    Commit,
    ConcurrencyConflict,
    EventTooLarge,
    MemoryEventStore,
    PostgresEventStore,
    commit_of,
    run_sync,
)
from baton_common.telemetry import context_from

log = logging.getLogger(__name__)
RECENT_KEPT = 50_000  # ids of messages committed lately, with a direct subject (about 5 MB)
GAP_CHECK_S = 30.0  # how often a consumer with ``on_gap`` asks whether the stream dropped some
# How long one pull request waits at the server for messages. A message is delivered the moment
# it arrives however long the pull waits, so this sets only how often an idle consumer asks
# again: every half second, 20 consumers made nats-server and the services wake 80 times a
# second doing nothing (issue 32). A pull lost with a restarted server is asked again at once
# (``Puller.end_pull`` on reconnect), and a stopping consumer ends its own.
PULL_WAIT_S = 30.0


class Unhandleable(Exception):
    """Raised by a handler for a message that no retry can ever handle: it is parked."""


@dataclass
class Delivery:
    """One decoded message: the typed event, its raw message and its restored trace context."""

    event: Event
    msg: Msg | None = None
    context: otel_context.Context = field(default_factory=otel_context.Context)

    @property
    def message_id(self) -> str:
        return str(self.event.event_id)

    @property
    def deliveries(self) -> int:
        """How many times the stream has delivered it (``deliveries_of``)."""
        return 1 if self.msg is None else deliveries_of(self.msg)


Handler = Callable[[list[Delivery]], Awaitable[Commit | None]]


def deliveries_of(msg: Msg) -> int:
    """How many times the stream has delivered a message, read from its reply subject alone (the
    library's full metadata parse, times and all, costs more than the rest of a delivery's
    bookkeeping; 4.5% of a tool worker's samples at saturation)."""
    try:
        tokens = Msg.Metadata._get_metadata_fields(msg.reply)
        return int(tokens[4] if len(tokens) == 9 else tokens[Msg.Ack.NumDelivered])
    except Exception:  # the library's reply layout changed: its own parse, then
        try:
            return int(msg.metadata.num_delivered)
        except Exception:
            return 1


def stream_sequence(msg: Msg) -> int:
    """A delivered message's stream sequence, read from its reply subject alone (as
    ``Delivery.deliveries``: the library's full metadata parse builds datetimes too)."""
    try:
        tokens = Msg.Metadata._get_metadata_fields(msg.reply)
        return int(tokens[5] if len(tokens) == 9 else tokens[Msg.Ack.StreamSeq])
    except Exception:  # the library's reply layout changed: its own parse, then
        return int(msg.metadata.sequence.stream)


class Puller:
    """``PullSubscription.fetch`` without a task per message.

    nats-py's fetch waits for every message of a batch through ``next_msg``, which makes a task,
    a ``wait_for`` (another task) and a uuid each time: about half of what a delivery costs the
    receiving process in Python here (28 us per message in all, measured on 10,000; 9.4 us this
    way). Its requests are the library's: one pull for ``batch`` that lingers up to ``timeout``;
    what it brings is taken straight from the subscription's queue, keeping the library's own
    bookkeeping (pending bytes, ``task_done``). As with the library, a pull answered in part
    stays open and goes on delivering into the queue until it is full or expires; a new pull is
    asked only once it is over, so there is never more than one waiting. It reads the
    subscription's private queue: on a library version without it, ``fetch`` is the library's.

    ``bus``: a reconnection to the server ends the open pull (a restarted server forgot it)."""

    def __init__(self, psub: Any, bus: Bus | None = None) -> None:
        self.psub = psub
        inner = getattr(psub, "_sub", None)
        queue = getattr(inner, "_pending_queue", None)
        known = all(hasattr(psub, a) for a in ("_nc", "_nms", "_deliver"))
        self._sub = inner if isinstance(queue, asyncio.Queue) and known else None
        self._open_until = 0.0  # when the pull asked last expires (monotonic)
        self._open_left = 0  # how many more it may deliver
        if bus is not None and self._sub is not None:
            bus.on_reconnect.append(self.end_pull)

    def end_pull(self) -> None:
        """Give up the open pull: a ``fetch`` waiting on it returns with nothing, and the next
        one asks anew (after a reconnection, or to stop). Any thread of the loop's."""
        if self._sub is None:
            return
        ended = Msg(self.psub._nc, headers={api.Header.STATUS: api.StatusCode.REQUEST_TIMEOUT})
        with contextlib.suppress(asyncio.QueueFull):  # full: the waiting fetch has its messages
            self._sub._pending_queue.put_nowait(ended)

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        if self._sub is None:
            return list(await self.psub.fetch(batch, timeout=timeout))
        msgs: list[Msg] = []
        self._take(msgs, batch)
        if msgs:
            return msgs
        now = time.monotonic()
        wait = self._open_until - now
        if self._open_left <= 0 or wait <= 0:
            p = self.psub
            ask = {"batch": batch, "expires": int(timeout * 1e9) - 100_000}
            await p._nc.publish(p._nms, json.dumps(ask).encode(), p._deliver)
            self._open_until, self._open_left, wait = now + timeout, batch, timeout
        await self._first(msgs, batch, min(wait, timeout))
        if not msgs:
            raise NatsTimeoutError
        return msgs

    async def _first(self, msgs: list[Msg], batch: int, wait: float) -> None:
        """Wait for the first arrival, then take what came with it."""
        assert self._sub is not None
        queue = self._sub._pending_queue
        try:
            async with asyncio.timeout(wait):
                while not msgs:
                    self._one(await queue.get(), msgs)
                    self._take(msgs, batch)
                    if not msgs and self._open_left <= 0:
                        return  # the pull ended with nothing (it expired, or was refused)
        except TimeoutError:
            return

    def _take(self, msgs: list[Msg], batch: int) -> None:
        assert self._sub is not None
        queue = self._sub._pending_queue
        while len(msgs) < batch and not queue.empty():
            self._one(queue.get_nowait(), msgs)

    def _one(self, msg: Msg, msgs: list[Msg]) -> None:
        """One message off the queue, with the library's bookkeeping: kept if it is data; a
        status that ends a pull (it expired, or the server refused it) closes the open one."""
        assert self._sub is not None
        self._sub._pending_size -= len(msg.data)
        self._sub._pending_queue.task_done()
        status = msg.headers.get(api.Header.STATUS) if msg.headers else None
        if status is None:
            msgs.append(msg)
            self._open_left -= 1
        elif status in _REQUEST_ENDS:
            self._open_left = 0
        elif status != api.StatusCode.CONTROL_MESSAGE:  # not a heartbeat: the consumer is gone…
            raise APIError.from_msg(msg)


def _handled_up_to(info: api.ConsumerInfo) -> int:
    """The stream sequence up to which a consumer surely handled what it was given: what it
    acknowledged, unless it was sent less (the two differ when a process stopped holding
    messages: they were sent, and the stream may drop them before they come back)."""
    sent = info.delivered.stream_seq if info.delivered else 0
    acked = info.ack_floor.stream_seq if info.ack_floor else 0
    return min(sent or 0, acked or 0)


def _direct_deliveries(data: bytes, types: frozenset[str] | None) -> list[Delivery]:
    """The events of a direct message (one per line: a commit's events are one batch);
    what does not decode, or is not of ``types``, is left to its stream copy."""
    out = []
    for line in data.split(b"\n"):
        try:
            event = registry().decode(line)
        except EventDecodeError:
            continue  # the stream's copy is parked with the reason
        if types is not None and event.type not in types:
            log.warning("a direct %s on a subject for %s ignored", event.type, sorted(types))
            continue
        trace = {"traceparent": event.traceparent} if event.traceparent else None
        out.append(Delivery(event, None, context_from(trace)))
    return out


_REQUEST_ENDS = {
    api.StatusCode.NO_MESSAGES,
    api.StatusCode.REQUEST_TIMEOUT,
    api.StatusCode.CONFLICT,  # e.g. the consumer's limit on waiting requests: ask again later
}


@dataclass
class ConsumerStats:
    batches: int = 0
    messages: int = 0
    commits: int = 0
    skipped: int = 0
    parked: int = 0
    nacked: int = 0
    direct_left: int = 0  # direct messages left to their stream copies (a burst's backlog)


async def commit_follow_ups(
    store: PostgresEventStore | MemoryEventStore,
    relay: Relay | None,
    follow_up: Callable[[], Commit | None],
    on_failure: Callable[[], None],
) -> int:
    """Make the commits that wait for the one just made, one after the other; how many.

    A failure stops here and calls ``on_failure`` (the state in memory is dropped): what was not
    committed is picked up again from the store by the durable timers its owner set."""
    made = 0
    if relay is not None:
        relay.hold()
    try:
        while True:
            try:
                commit = follow_up()
                if commit is None:
                    return made
                rows = await commit_of(store, commit)
            except Exception:
                log.exception("a follow-up commit failed; its timers will take it up again")
                on_failure()
                return made
            made += 1
            tracing.ran_inline(commit.events)
            if rows and relay:
                relay.committed(rows)
    finally:
        if relay is not None:
            relay.release()


class Consumer:
    """Runs one handler over a durable JetStream pull consumer."""

    def __init__(
        self,
        bus: Bus,
        store: PostgresEventStore | MemoryEventStore,
        name: str,
        subjects: Sequence[str],
        handler: Handler,
        *,
        batch: int = 256,
        max_deliveries: int = 10,
        ack_wait_s: float | None = None,
        relay: Relay | None = None,
        on_conflict: Callable[[], None] | None = None,
        deliver_new_only: bool = False,
        lock: asyncio.Lock | None = None,
        precheck: bool = True,
        record_empty: bool = True,
        follow_up: Callable[[], Commit | None] | None = None,
        linger_s: float = 0.0,
        urgent: Callable[[Msg], bool] | None = None,
        in_order: bool = False,
        wanted: Callable[[Sequence[Msg]], Awaitable[set[int]]] | None = None,
        on_gap: Callable[[], Awaitable[Any]] | None = None,
        on_handled: Callable[[Sequence[Delivery]], Awaitable[None]] | None = None,
    ) -> None:
        self.bus, self.store, self.name = bus, store, name
        self.subjects = [f"{bus.settings.subject_root}.{s}" for s in subjects]
        self.handler = handler
        self.batch = batch
        self.max_deliveries = max_deliveries
        self.ack_wait_s = ack_wait_s or bus.settings.ack_wait_s
        self.relay = relay
        self.on_conflict = on_conflict or (lambda: None)
        self.deliver_new_only = deliver_new_only
        # False: skip the inbox read before handling (saves a round trip per batch); only for
        # handlers without effects outside the commit, since a redelivery is handled once more
        # before its commit is refused.
        self.precheck = precheck
        # False: a batch whose handling decided nothing commits nothing (not even its inbox
        # rows); only for handlers for which seeing a message again is harmless (a watcher that
        # mostly finds nothing to do, like outbound webhooks with no subscription).
        self.record_empty = record_empty
        # Commits that follow a batch's own, under the same lock (the executor's pure steps that
        # wait for the outcome before them to be committed): asked for until it answers None.
        self.follow_up = follow_up
        # > 0 for a consumer off the latency path (views, outbound webhooks, triggers, learning):
        # a batch smaller than ``batch`` waits this long before it is handled, so the services
        # that are on the path (executor, workers) get the CPU first, and what arrives in the
        # meantime makes the next batch larger (fewer commits per event at low load).
        self.linger_s = linger_s
        self.urgent = urgent  # a message that is handled at once all the same
        # True for a handler that needs the stream's order (the projector's views): see start().
        self.in_order = in_order
        # Which messages of a batch (their indexes) the handler could act on, told from their
        # subjects and headers: the others are acked without being decoded. Only for handlers
        # that commit nothing for a message they do not act on (``record_empty=False``).
        self.wanted = wanted
        # Reads from the store what the stream dropped before this consumer was given it (its
        # limits: BATON_STREAM_MAX_AGE / _MAX_BYTES), under ``lock``: see ``check_gap``.
        self.on_gap = on_gap
        # Told of every batch once it is committed (or found handled), before it is acked, and
        # of nothing when a fetch found nothing: where the consumer got to in each store's log
        # (``recovery.StoreRecovery``).
        self.on_handled = on_handled
        self._gap_first = 0  # the stream's first sequence when the last gap was made up
        self._gap_checked = 0.0
        # Serialises handle+commit with other writers of the same in-memory state (timers).
        self.lock = lock or asyncio.Lock()
        self.stats = ConsumerStats()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # With a direct subject (listen_direct): the ids of messages committed lately, so the
        # stream's copy of one taken directly (or the other way round) is acked and skipped.
        self._recent: OrderedDict[str, None] | None = None
        self._direct: list[Any] = []
        self._waiting: list[Delivery] = []  # taken directly, to handle in the next batch
        self._draining: asyncio.Task[None] | None = None

    async def start(self) -> None:
        stream = self.bus.settings.stream
        config = api.ConsumerConfig(
            durable_name=self.name,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,  # we count deliveries ourselves, so the last one is parked, not lost
            max_ack_pending=max(self.batch * 4, 1000),
            deliver_policy=api.DeliverPolicy.NEW
            if self.deliver_new_only
            else api.DeliverPolicy.ALL,
        )
        if len(self.subjects) == 1:
            config.filter_subject = self.subjects[0]
        else:
            config.filter_subjects = self.subjects
        if self.in_order:
            await self._resume_in_order(stream, config)
        try:
            await self.bus.js.add_consumer(stream, config=config)
        except Exception as exc:  # it exists already (as configured before), or another replica
            log.debug("consumer %s: not created: %s", self.name, exc)
        self.sub = await self.bus.js.pull_subscribe_bind(durable=self.name, stream=stream)
        self.puller = Puller(self.sub, self.bus)
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.name}")

    async def listen_direct(
        self, subject: str, *, types: frozenset[str] | None = None, signed: bool = True
    ) -> None:
        """Also take messages published straight to ``subject`` on core NATS by the process
        that just made them (the gateway's direct plans, the workers' results), one bus hop
        sooner than the stream delivers its copy. The stream's copy stays the durable path: a
        direct message lost, or one that fails, is handled when that copy arrives; whichever
        comes second is acked and skipped (by the ids of recent commits, else by the inbox in
        the commit). ``types``: the only event types taken from this subject; ``signed``: a
        message must carry the installation's signature (False only for a subject whose events
        their senders may publish on the stream all the same, e.g. ``task.finished``).

        What arrives while a batch commits is handled together next, as one batch and one
        commit (a saturated worker pool reports many results at once), ``batch`` at most. A
        burst that comes faster than it is handled is not held here: once ``batch`` wait, a
        direct message is left to its stream copy, which comes in bounded fetches (issue 32:
        20,000 plans at once were one batch of 20,000 executions, and the executor's memory
        stayed at that peak after they parked)."""
        if self._recent is None:
            self._recent = OrderedDict()
        waiting = self._waiting

        async def on_message(msg: Msg) -> None:
            if len(waiting) >= self.batch:  # a burst: left to its stream copies, in batches
                self.stats.direct_left += 1
                return
            if signed and not self.bus.verified(msg, "direct hand-over"):
                return  # the stream's copy, which the relay published, is the durable path
            waiting.extend(_direct_deliveries(msg.data, types))
            if waiting and (self._draining is None or self._draining.done()):
                self._draining = asyncio.create_task(self._drain_direct(waiting))

        self._direct.append(await self.bus.nc.subscribe(subject, queue=self.name, cb=on_message))

    async def _drain_direct(self, waiting: list[Delivery]) -> None:
        """Handle what came directly, at most ``batch`` per commit, until nothing is waiting."""
        while waiting:
            batch = waiting[: self.batch]
            del waiting[: self.batch]
            try:
                await self._handle(batch, False)
            except Exception as exc:
                log.info(
                    "consumer %s: direct messages wait for their stream copies (%s)", self.name, exc
                )
                self.on_conflict()

    async def _resume_in_order(self, stream: str, config: api.ConsumerConfig) -> None:
        """After a crash, JetStream hands out newer messages at once and gives back the ones
        the dead process held unacked only after ``ack_wait``: a handler that needs the
        stream's order would see an execution's end before its start. So a consumer that held
        messages is made again from its ack floor: everything after it comes in order, and what
        was handled already is skipped by the handler's own record (the views' event ids)."""
        try:
            info = await self.bus.js.consumer_info(stream, self.name)
        except Exception:
            return  # none yet
        if not info.num_ack_pending or info.ack_floor is None:
            return
        floor = info.ack_floor.stream_seq or 0
        log.info(
            "consumer %s: %d messages were held by a process that is gone; resuming in order "
            "after stream sequence %d",
            self.name,
            info.num_ack_pending,
            floor,
        )
        await self.bus.js.delete_consumer(stream, self.name)
        config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = floor + 1

    async def stop(self) -> None:
        """Finish the batch in hand, then stop fetching (SIGTERM drain)."""
        self._stopping = True
        for direct in self._direct:
            with contextlib.suppress(Exception):
                await direct.unsubscribe()
        if self._draining is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._draining, 30)
        if self._task:
            self.puller.end_pull()  # an idle consumer waits on a long pull: end it now
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 30)
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()

    async def check_gap(self) -> bool:
        """Has the stream dropped messages this consumer was never given (it was stopped, or
        fell behind further than the stream keeps)? Then ``on_gap`` reads them from the store,
        and True. Told by the stream's first sequence being past the last one delivered here:
        with a subject filter that also happens when only messages of other subjects went, so
        ``on_gap`` must be cheap when nothing is missing (it reads from where it got to)."""
        if self.on_gap is None:
            return False
        self._gap_checked = time.monotonic()
        stream = self.bus.settings.stream
        first = (await self.bus.js.stream_info(stream)).state.first_seq or 0
        done = _handled_up_to(await self.bus.js.consumer_info(stream, self.name))
        if first <= max(done + 1, self._gap_first):
            return False
        log.warning(
            "consumer %s: the stream starts at %d, this consumer had handled up to %d: reading "
            "what it may have missed from the store",
            self.name,
            first,
            done,
        )
        if self.wanted is not None:
            await self.wanted([])  # what it reads for each batch (subscriptions…), read afresh
        async with self.lock:
            await self.on_gap()
        self._gap_first = first
        return True

    async def _run(self) -> None:
        while not self._stopping:
            if self.on_gap is not None and time.monotonic() - self._gap_checked >= GAP_CHECK_S:
                try:
                    await self.check_gap()
                except Exception:  # the next check tries again; the stream goes on meanwhile
                    log.exception("consumer %s: catching up from the store failed", self.name)
            try:
                msgs = await self.puller.fetch(self.batch, timeout=PULL_WAIT_S)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                if self.on_handled is not None:
                    await self.on_handled([])  # idle: where it got to is saved all the same
                continue
            except Exception as exc:
                log.warning("consumer %s: fetch failed: %s", self.name, exc)
                await asyncio.sleep(0.5)
                continue
            if self.linger_s and len(msgs) < self.batch and not self._has_urgent(msgs):
                await asyncio.sleep(self.linger_s)
            try:
                await self.process(msgs)
            except Exception:  # never lose the loop; unacked messages come back after ack_wait
                log.exception("consumer %s: batch failed", self.name)
                await asyncio.sleep(0.5)
                continue
            heap.handled(len(msgs))
            if len(msgs) < self.batch:  # caught up: a burst's free memory goes back
                heap.caught_up()

    def _has_urgent(self, msgs: Sequence[Msg]) -> bool:
        return self.urgent is not None and any(self.urgent(m) for m in msgs)

    async def process(self, msgs: Sequence[Msg]) -> None:
        self.stats.batches += 1
        self.stats.messages += len(msgs)
        if self._recent is not None:  # the stream's copies of what came directly: no decoding
            msgs = [m for m in msgs if not await self._taken_directly(m)]
        if self.wanted is not None and msgs:
            keep = await self.wanted(msgs)
            for i, m in enumerate(msgs):
                if i not in keep:
                    self.stats.skipped += 1
                    await m.ack()
            msgs = [m for i, m in enumerate(msgs) if i in keep]
        deliveries = [d for d in [await self._decode(m) for m in msgs] if d is not None]
        for attempt in range(3):
            try:
                # First try optimistic (when allowed): the inbox rows in the commit catch a
                # redelivery anyway; after a conflict, always look first.
                await self._handle(deliveries, check=self.precheck or attempt > 0)
                return
            except ConcurrencyConflict as exc:
                log.info("consumer %s: conflict (%s), reloading", self.name, exc)
                self.on_conflict()
                if attempt == 2:
                    break
            except Exception as exc:
                self.on_conflict()
                if len(deliveries) == 1:
                    await self._failed(deliveries[0], exc)
                    return
                break
        for delivery in deliveries:  # isolate the message that fails
            try:
                await self._handle([delivery])
            except Exception as exc:
                self.on_conflict()
                await self._failed(delivery, exc)

    async def _taken_directly(self, msg: Msg) -> bool:
        assert self._recent is not None
        if (msg.headers or {}).get("Nats-Msg-Id") not in self._recent:
            return False
        self.stats.skipped += 1
        await msg.ack()
        return True

    async def _decode(self, msg: Msg) -> Delivery | None:
        try:
            event = registry().decode(msg.data, (msg.headers or {}).get("Baton-Type"))
        except EventDecodeError as exc:
            await self._park(msg, str(exc))
            return None
        delivery = Delivery(event, msg, context_from(msg.headers))
        if delivery.deliveries > 1:
            perf.REDELIVERIES.labels(self.name).inc()
        if delivery.deliveries > self.max_deliveries:
            await self._park(msg, f"max deliveries reached ({self.max_deliveries})")
            return None
        return delivery

    async def _handle(self, deliveries: list[Delivery], check: bool = True) -> None:
        if not deliveries:
            return
        ids = [d.message_id for d in deliveries]
        done = await run_sync(self.store.handled, self.name, ids) if check else set()
        fresh = []
        for d in deliveries:  # a message redelivered into the same batch counts once
            if d.message_id not in done:
                done.add(d.message_id)
                fresh.append(d)
        if fresh:
            async with self.lock:
                if self._recent is not None:  # taken by the other path meanwhile?
                    fresh = [d for d in fresh if d.message_id not in self._recent]
                if fresh:
                    await self._handle_fresh(fresh)
        self.stats.skipped += len(deliveries) - len(fresh)
        if self.on_handled is not None:
            await self.on_handled(deliveries)
        for d in deliveries:
            if d.msg is not None:
                await d.msg.ack()

    async def replay(self, deliveries: list[Delivery]) -> None:
        """Handle events read from the store (``on_gap``, which holds ``lock``): those the inbox
        does not know, as one commit, else one by one. One that no retry can handle is logged
        and left (live, it would have been parked); any other failure is raised, so the next
        check reads it again."""
        try:
            await self._replay(deliveries)
            return
        except Exception:
            self.on_conflict()
        for delivery in deliveries:
            try:
                await self._replay([delivery])
            except (Unhandleable, EventTooLarge) as exc:
                self.on_conflict()
                with logs.bound_to(delivery.event):
                    log.error("consumer %s: %s left: %s", self.name, delivery.event.type, exc)

    async def _replay(self, deliveries: list[Delivery]) -> None:
        done = await run_sync(self.store.handled, self.name, [d.message_id for d in deliveries])
        fresh = [d for d in deliveries if d.message_id not in done]
        if fresh:
            await self._handle_fresh(fresh)
        self.stats.skipped += len(deliveries) - len(fresh)

    async def _handle_fresh(self, fresh: list[Delivery]) -> None:
        about = logs.bound_to(fresh[0].event) if len(fresh) == 1 else contextlib.nullcontext()
        with about, tracing.handling(self.name, fresh) as causes:
            t0 = time.perf_counter()
            outcome = await self.handler(fresh) or Commit()
            t1 = time.perf_counter()
            if not self.record_empty and outcome == Commit():
                self.stats.skipped += len(fresh)
                return
            # Everything the handler decided (events, timers, lock claims…), plus the inbox.
            commit = replace(
                outcome,
                events=tracing.stamped(outcome.events, causes),
                handled=[*outcome.handled, *((self.name, d.message_id) for d in fresh)],
            )
            with perf.COMMIT_SECONDS.labels(self.name).time():
                rows = await commit_of(self.store, commit)
            tracing.ran_inline(commit.events)
        if self._recent is not None:
            for d in fresh:
                self._recent[d.message_id] = None
            while len(self._recent) > RECENT_KEPT:
                self._recent.popitem(last=False)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s: %d messages handled in %.1f ms, %d events committed in %.1f ms",
                self.name,
                len(fresh),
                (t1 - t0) * 1000,
                len(commit.events),
                (time.perf_counter() - t1) * 1000,
            )
        self.stats.commits += 1
        if rows and self.relay:
            self.relay.committed(rows)
        if self.follow_up is not None:
            self.stats.commits += await commit_follow_ups(
                self.store, self.relay, self.follow_up, self.on_conflict
            )

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        assert delivery.msg is not None
        # EventTooLarge: what it would commit can never be stored; a retry decides the same.
        permanent = isinstance(exc, Unhandleable | EventTooLarge)
        if permanent or delivery.deliveries >= self.max_deliveries:
            await self._park(delivery.msg, f"{type(exc).__name__}: {exc}")
            return
        delay = min(30.0, 0.2 * 2 ** (delivery.deliveries - 1)) * random.uniform(0.8, 1.2)
        with logs.bound_to(delivery.event):
            log.warning(
                "consumer %s: %s failed (%s); retry in %.1fs",
                self.name,
                delivery.event.type,
                exc,
                delay,
            )
        self.stats.nacked += 1
        await delivery.msg.nak(delay=delay)

    async def _park(self, msg: Msg, reason: str) -> None:
        await self.bus.park(msg, self.name, reason)
        self.stats.parked += 1
        await msg.ack()
