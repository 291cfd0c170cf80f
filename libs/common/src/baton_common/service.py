"""What every service process shares: wiring, health endpoints and a clean SIGTERM drain."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from baton_common import heap, perf, startwatch, telemetry, together, tracing
from baton_common.bus import Bus, on_server, stream_limits
from baton_common.consumer import Consumer
from baton_common.recovery import recovering
from baton_common.relay import Relay
from baton_common.settings import Settings
from baton_common.store import (
    Commit,
    ConcurrencyConflict,
    MemoryEventStore,
    PostgresEventStore,
    Timer,
    commit_of,
    open_store,
    run_sync,
)

log = logging.getLogger(__name__)
# The longest one step of a drain may take (a stop hook, a consumer's batch in hand, the relay).
DRAIN_STEP_S = 10.0


# Net allocations between two young collections (CPython's default is 700). A step allocates a
# few hundred objects (events, models, dicts); the defaults ran a collection every few steps.
GC_YOUNG = 10_000
SAMPLE_EVERY_S = 5.0  # the shortest time between two samples of lag for /metrics
SAMPLE_TIMEOUT_S = 3.0  # a scrape waits no longer for one


def tune_gc() -> None:
    """Once a service has started: what it keeps for its whole life (modules, pydantic schemas,
    the catalogue, connections) is moved out of the cyclic collector's sight (``gc.freeze``), and
    young collections run less often. Otherwise each full collection walks every object the
    process holds, hundreds of thousands, in the middle of a step. Garbage is still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    heap.tune_malloc()  # a burst's large buffers go back to the system when freed
    heap.trim_now()  # what start-up freed goes back to the system


@dataclass
class Runtime:
    """A service's connections and long-running parts, started and stopped together."""

    name: str
    settings: Settings
    bus: Bus
    store: PostgresEventStore | MemoryEventStore | None = None
    relay: Relay | None = None
    consumers: list[Consumer] = field(default_factory=list)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    ready: bool = False
    metrics: dict[str, Callable[[], float]] = field(default_factory=dict)
    on_stop: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)  # more durable consumers to report lag of
    scraped: asyncio.Event = field(default_factory=asyncio.Event)  # /metrics was read
    sampled_at: float = 0.0  # monotonic time of the last sample of lag
    samplers: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)  # run then too

    @classmethod
    async def open(cls, name: str, settings: Settings, *, store: str | None = None) -> Runtime:
        telemetry.setup(name)
        bus = await Bus.connect(settings, name)
        runtime = cls(name, settings, bus)
        from baton_common.discovery import follow_catalogue

        await follow_catalogue(bus)  # every process plans, checks and runs the same tools
        await serve_replays(bus, name)
        if store:
            runtime.store = await asyncio.to_thread(
                open_store,
                settings.database_url,
                store,
                schema=settings.db_schema,
                pool_min=settings.db_pool_min,
            )
            runtime.relay = Relay(runtime.store, bus)
            runtime.relay.start()
            runtime.spawn(
                every(settings.inbox_prune_every_s, runtime.prune_inbox, "inbox pruning"), "inbox"
            )
        return runtime

    async def prune_inbox(self) -> int:
        """Forget handled messages that can no longer come back (``inbox_keep``)."""
        assert self.store is not None
        gone: int = await run_sync(self.store.prune_inbox, inbox_keep(self.settings))
        if gone:
            log.info(
                "%s: %d inbox rows past %.0f s pruned", self.name, gone, inbox_keep(self.settings)
            )
        return gone

    async def start_consumer(self, consumer: Consumer) -> Consumer:
        # What the stream drops before the consumer is given it is read from the stores.
        recovering(consumer, self.settings, inbox_keep(self.settings))
        await consumer.start()
        self.consumers.append(consumer)
        return consumer

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        self.tasks.append(asyncio.create_task(coro, name=name))  # type: ignore[arg-type]

    async def serve_forever(self) -> None:
        """Run until SIGTERM/SIGINT, then drain: finish batches in hand, publish, close.

        The drain's signal handlers are set last, with nothing that can wait between them and
        "ready": until then SIGTERM keeps its default disposition, and the kernel ends a
        process that is still starting whatever it does (a handler run by the event loop
        waits for the loop; a start stuck after it was set ignored SIGTERM in CI)."""
        if port := self.settings.health_port:
            await asyncio.start_server(self._health, "0.0.0.0", port)
        self.spawn(self._sample_when_scraped(), "metrics")
        tune_gc()
        self.spawn(heap.keep_trimmed(), "heap")  # a burst's freed heap goes back to the system
        heap.install_dump(self.name)
        if group := together.GROUP.get():  # one process, several services: its signals
            group.join(self.stopping)
        else:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self.stopping.set)
        self.ready = True
        startwatch.ready()
        log.info("%s ready", self.name)
        await self.stopping.wait()
        await self.close()

    async def close(self) -> None:
        self.ready = False
        log.info("%s draining", self.name)
        for hook in self.on_stop:
            await self._drain_step("a stop hook", hook())
        for consumer in self.consumers:
            await self._drain_step(f"consumer {consumer.name}", consumer.stop())
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            _, late = await asyncio.wait(self.tasks, timeout=DRAIN_STEP_S)
            for task in late:
                log.warning("%s: task %s still running after the drain", self.name, task.get_name())
        if self.relay:
            # ship what was just committed (what is not is shipped from the store on the next start)
            await self._drain_step("the relay's pending events", self.relay.publish_pending())
            await self._drain_step("the relay", self.relay.stop())
        await self.bus.close()
        if self.store:
            self.store.close()
        await asyncio.to_thread(telemetry.shutdown)  # send the spans still buffered
        log.info("%s stopped", self.name)

    async def _drain_step(self, what: str, step: Awaitable[Any]) -> None:
        """One step of the drain, bounded: a step that hangs (a lost reply, a stuck pull) must not
        keep the process from stopping. Nothing is lost by going on: unacknowledged messages are
        delivered again and unpublished events are published from the store on the next start."""
        try:
            await asyncio.wait_for(step, DRAIN_STEP_S)
        except TimeoutError:
            log.warning(
                "%s: %s did not finish within %gs; stopping anyway", self.name, what, DRAIN_STEP_S
            )
        except Exception as exc:
            log.warning("%s: %s failed while draining: %s", self.name, what, exc)

    def metrics_text(self) -> str:
        self.scraped.set()
        lines = []
        for consumer in self.consumers:
            for key, value in vars(consumer.stats).items():
                lines.append(f'baton_consumer_{key}_total{{consumer="{consumer.name}"}} {value}')
        if self.relay:
            lines.append(
                f'baton_relay_published_total{{relay="{self.relay.name}"}} {self.relay.published}'
            )
        lines += [f"baton_{k} {fn()}" for k, fn in self.metrics.items()]
        return "\n".join(lines) + "\n" + perf.text()

    async def _sample_when_scraped(self) -> None:
        """Lag is read from the server when ``/metrics`` is read, at most every
        ``SAMPLE_EVERY_S``, not on a timer: an idle engine nobody watches asks nothing (every
        service asked every 5 s). The health port's ``/metrics`` waits for the sample
        (``sample_now``); a scrape elsewhere (the gateway's route) shows the one it asked for
        next time."""
        while True:
            await self.scraped.wait()
            self.scraped.clear()
            await self.sample_now()

    async def sample_now(self) -> None:
        """Sample, unless that was done less than ``SAMPLE_EVERY_S`` ago (a bounded wait)."""
        if time.monotonic() - self.sampled_at < SAMPLE_EVERY_S:
            return
        self.sampled_at = time.monotonic()
        try:
            await asyncio.wait_for(self._sample(), SAMPLE_TIMEOUT_S)
        except Exception:
            log.exception("metrics sampling failed")

    async def _sample(self) -> None:
        names = [c.name for c in self.consumers] + self.watched
        await sample_lag(self.bus, names, self.relay)
        for sampler in self.samplers:
            await sampler()

    async def _health(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = (await reader.readline()).decode(errors="replace").split()
            path = request[1] if len(request) > 1 else "/"
            status, body, kind = (
                200,
                json.dumps({"status": "ok", "service": self.name}),
                "application/json",
            )
            if path.startswith("/readyz") and not (self.ready and self.bus.nc.is_connected):
                status, body = 503, json.dumps({"status": "not ready", "service": self.name})
            elif path.startswith("/metrics"):
                await self.sample_now()
                body, kind = self.metrics_text(), "text/plain; version=0.0.4"
            elif not path.startswith(("/healthz", "/readyz")):
                status, body = 404, json.dumps({"detail": f"no route {path}"})
            writer.write(
                f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body.encode())}\r\nConnection: close\r\n\r\n{body}".encode()
            )
            await writer.drain()
        finally:
            writer.close()


def inbox_keep(settings: Settings) -> float:
    """How long a handled message's inbox row is kept: ``BATON_INBOX_KEEP``, and never less than
    the time within which the same message can still arrive again, i.e. the stream's duplicate
    window (a relay's re-publish after a crash) plus a redelivery's wait, twice (an unacked
    message comes back after ``ack_wait``)."""
    floor = stream_limits(settings)["duplicate_window"] + 2 * settings.ack_wait_s
    return max(float(settings.inbox_keep_s), floor)


def serving(
    start: Callable[[Settings], Awaitable[Runtime]],
) -> Callable[[Settings], Awaitable[None]]:
    """A service's entry point (``baton serve <name>``) from its ``start``: everything started,
    then served until SIGTERM (signal handlers, health port, drain)."""

    async def run(settings: Settings) -> None:
        runtime = await start(settings)
        await runtime.serve_forever()

    return run


async def timer_loop(
    store: Any, fire: Callable[[], Awaitable[int]], interval_s: float, what: str, batch: int
) -> None:
    """Fire a store's due timers as they fall due. ``fire`` reads up to ``batch`` of them and
    fires them (how many). Then, unless the batch was full, the loop sleeps until the next timer
    it saw falls due, at most ``interval_s`` (another replica, or the commit just made, may set
    one sooner), or until this process commits one due sooner (``TimerWake``). A timer fires on
    time instead of up to an interval late, and an idle service looks no more often than before."""
    while True:
        try:
            if await fire() >= batch:
                continue  # more are due
        except Exception:
            log.exception("%s failed; trying again", what)
            store.timer_wake.next_due = None  # not known: wait the whole interval
        stop_if_cancelled()
        await store.timer_wake.sleep(interval_s)


async def fire_due(
    runtime: Runtime,
    lock: asyncio.Lock,
    fire: Callable[[list[Timer]], Commit],
    batch: int,
    what: str,
    *,
    trace: str | None = None,
) -> int:
    """Act on up to ``batch`` due timers of the runtime's store (how many were due). ``fire``
    makes the one commit that records what they did and clears them, so a timer fires once even
    when the process dies around it; a lost race (another replica, a call) leaves them to be read
    again. ``trace`` names the span the new events start from (they have no message behind them)."""
    assert runtime.store is not None
    timers = await runtime.store.due_timers_async(datetime.now(UTC), batch)
    if not timers:
        return 0
    async with lock:
        commit = await run_sync(fire, timers)
        if trace:
            commit = replace(commit, events=tracing.begin(trace, commit.events))
        try:
            rows = await commit_of(runtime.store, commit)
        except ConcurrencyConflict:
            log.info("%s: changed meanwhile; they are read again", what)
            return 0
    if runtime.relay and rows:
        runtime.relay.committed(rows)
    return len(timers)


async def every(interval_s: float, fn: Callable[[], Awaitable[Any]], what: str) -> None:
    """Call ``fn`` forever, ``interval_s`` apart; errors are logged and the loop goes on."""
    while True:
        try:
            await fn()
        except Exception:
            log.exception("%s failed; trying again", what)
        stop_if_cancelled()
        await asyncio.sleep(interval_s)


def stop_if_cancelled() -> None:
    """End a loop whose task was cancelled even if the call in it swallowed the cancellation:
    Python 3.11's ``asyncio.wait_for`` (inside nats-py's requests) returns the reply when it
    arrives with the cancellation. ``keep_catalogue``, cancelled as the executor's start failed,
    then slept for an hour: the process never ended and ignored SIGTERM (reproduced)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def serve_replays(bus: Bus, name: str) -> None:
    """Send dead letters back to their subjects when the gateway asks (``POST
    /v1/deadletters/{seq}/replay``): only subjects this service's own key may publish, so the
    gateway never needs another service's permissions (busauth.GRANTS)."""
    from baton_common.bus import replay_dead_letter
    from baton_common.busauth import replay_subject, role_of

    async def on_request(msg: Any) -> None:
        if not bus.verified(msg, "dead-letter replay"):
            return
        try:
            seq = int(json.loads(msg.data)["seq"])
            parked = await bus.js.get_msg(bus.settings.dlq_stream, seq)
            await replay_dead_letter(bus, parked)  # type: ignore[arg-type]
            with contextlib.suppress(Exception):
                await bus.js.delete_msg(bus.settings.dlq_stream, seq)
            answer: dict[str, Any] = {"replayed": True}
        except Exception as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        await msg.respond(json.dumps(answer).encode())

    subject = replay_subject(bus.settings.subject_root, role_of(name))
    await bus.nc.subscribe(subject, queue="replay", cb=on_request)
    await on_server(bus.nc)  # answered from the moment the service says it is ready


async def sample_lag(bus: Bus, consumers: Sequence[str], relay: Relay | None) -> None:
    """Read lag and depths from the server and the store (a failed read keeps the last value)."""
    s = bus.settings
    for name in consumers:
        with contextlib.suppress(Exception):
            info = await bus.js.consumer_info(s.stream, name)
            perf.PENDING.labels(name).set(info.num_pending or 0)
            perf.ACK_PENDING.labels(name).set(info.num_ack_pending or 0)
            perf.REDELIVERED.labels(name).set(info.num_redelivered or 0)
    with contextlib.suppress(Exception):
        perf.STREAM_MESSAGES.labels(s.stream).set(
            (await bus.js.stream_info(s.stream)).state.messages
        )
    with contextlib.suppress(Exception):
        perf.DEAD_LETTERS.set((await bus.js.stream_info(s.dlq_stream)).state.messages)
    if relay is not None and relay.position is not None:
        with contextlib.suppress(Exception):
            head = await run_sync(relay.store.max_position)
            perf.RELAY_LAG.labels(relay.name).set(max(0, head - relay.position))
