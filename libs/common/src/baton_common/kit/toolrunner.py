"""The worker loop: take dispatched steps from a durable pull consumer, run each, report it once.

A runner holds a step like a lease: while the call runs it tells JetStream the step is still in
progress; if the process dies, the lease (ack wait) runs out and another runner gets the same
attempt with the same idempotency key. The outcome is published as ``task.finished`` with an id
derived from (execution, step, attempt, kind), so a repeated report is dropped by the server,
and the message is acked only after that. The executor's generic workers and the calendar
service's tools run on this loop; what differs is which tasks a runner takes and how it calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import FetchTimeoutError

from baton_common import contracts as c
from baton_common import perf
from baton_common.bus import Bus
from baton_common.consumer import PULL_WAIT_S, Puller, deliveries_of
from baton_common.contracts import registry
from baton_common.events import EventDecodeError
from baton_common.telemetry import context_from, tracer
from baton_common.tracing import step_attributes, step_finished

log = logging.getLogger(__name__)
MAX_DELIVERIES = 5  # a step lost this often (a crash or kill each time) fails for good
# How many times the task in hand was delivered (2+: a worker was lost while running it, so its
# outcome is unknown): a tool whose calls must not be repeated blindly reads it.
DELIVERIES: contextvars.ContextVar[int] = contextvars.ContextVar("deliveries", default=1)
FETCH = 256
# The executor's direct subject for results (``Bus.direct_subject``): a result reaches it while
# the stream stores the durable copy, one bus hop sooner (``Consumer.listen_direct``).
RESULTS = "executor.results"
Call = Callable[[c.StepDispatched], Awaitable[c.TaskFinished]]


class ToolRunner:
    """Runs up to ``concurrency`` calls at once from the durable consumer ``durable``.

    ``takes`` says which decoded tasks are this runner's (the others are acked and left to their
    own runner); ``marker``, when given, is a byte string every task of this runner's contains,
    so the rest are acked without being decoded. ``park`` sends what does not decode to the
    dead-letter stream (one runner does it; the others just ack)."""

    def __init__(
        self,
        bus: Bus,
        durable: str,
        worker: str,
        call: Call,
        *,
        takes: Callable[[c.StepDispatched], bool],
        concurrency: int,
        marker: bytes | None = None,
        park: bool = False,
    ) -> None:
        self.bus, self.durable, self.worker, self.call = bus, durable, worker, call
        self.takes, self.concurrency, self.marker, self.park = takes, concurrency, marker, park
        self.running: set[asyncio.Task[None]] = set()
        # id(task message) -> (message, when its lease was last renewed); Msg is not hashable
        self.leases: dict[int, tuple[Msg, float]] = {}
        self.completed = 0
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        s = self.bus.settings
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=10_000,
            filter_subject=f"{s.subject_root}.*.execution.step_dispatched",
        )
        with contextlib.suppress(Exception):
            await self.bus.js.add_consumer(s.stream, config=config)
        self.sub = await self.bus.js.pull_subscribe_bind(durable=self.durable, stream=s.stream)
        self.puller = Puller(self.sub, self.bus)
        self._tasks = [
            asyncio.create_task(self._run(), name=self.durable),
            asyncio.create_task(self._renew_leases(), name=f"{self.durable} leases"),
        ]

    async def stop(self) -> None:
        """Take nothing new; let the calls in hand finish and report (SIGTERM drain)."""
        self._stopping = True
        if self._tasks:
            self.puller.end_pull()  # an idle runner waits on a long pull: end it now
            with contextlib.suppress(asyncio.CancelledError):
                await self._tasks[0]
        if self.running:
            await asyncio.wait(self.running, timeout=60)
        for task in self._tasks[1:]:
            task.cancel()
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()

    async def _run(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self.running)
            if free <= 0:
                await asyncio.sleep(0.005)
                continue
            # With a marker most tasks are someone else's, skipped unopened: fetch a full batch.
            msgs = await self._fetch(FETCH if self.marker else min(free, FETCH))
            for msg in msgs:
                if self.marker is not None and self.marker not in msg.data:
                    await msg.ack()
                    continue
                task = asyncio.create_task(self._take(msg))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    async def _fetch(self, batch: int) -> list[Msg]:
        try:
            return await self.puller.fetch(batch, timeout=PULL_WAIT_S)
        except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
            return []
        except Exception as exc:
            log.warning("%s: fetch failed: %s", self.durable, exc)
            await asyncio.sleep(0.5)
            return []

    async def _take(self, msg: Msg) -> None:
        task = await self._decode(msg)
        if task is None or not self.takes(task):
            await msg.ack()  # not a task, or another runner's
            return
        result = await self._result_of(task, msg)
        try:
            await self._report(result)
        except Exception as exc:  # cannot report: let the lease run out and try again
            log.warning("could not publish result of %s: %s", task.idempotency_key, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return
        await msg.ack()
        self.completed += 1

    async def _decode(self, msg: Msg) -> c.StepDispatched | None:
        try:
            task = registry().decode(msg.data)
            if not isinstance(task, c.StepDispatched):
                raise EventDecodeError(f"not a task: {task.type}")
        except EventDecodeError as exc:
            if self.park:
                await self.bus.park(msg, self.durable, str(exc))
            return None
        return task

    async def _result_of(self, task: c.StepDispatched, msg: Msg) -> c.TaskFinished:
        deliveries = deliveries_of(msg)
        if deliveries > 1:
            perf.REDELIVERIES.labels(self.durable).inc()
        if deliveries > MAX_DELIVERIES:
            error = f"worker lost the step {deliveries - 1} times (crash or kill while running it)"
            return finished(task, self.worker, ok=False, error=error, retryable=False)
        with tracer().start_as_current_span(
            f"step {task.step_id} {task.tool}",
            context=context_from(msg.headers),
            attributes=step_attributes(task),
        ) as span:
            self.leases[id(msg)] = (msg, time.monotonic())
            DELIVERIES.set(deliveries)
            try:
                return step_finished(span, await self.call(task))
            finally:
                self.leases.pop(id(msg), None)

    async def _report(self, result: c.TaskFinished) -> None:
        """Publish the result; one the bus refuses as too large is reported as a failure (its
        output under BATON_MAX_STEP_OUTPUT_BYTES, but the server's max_payload is smaller)."""
        try:
            await self.bus.publish([result], direct=RESULTS)
        except MaxPayloadError:
            error = "the step's result is larger than the bus accepts (NATS max_payload)"
            refused = result.model_copy(
                update={"ok": False, "output": None, "error": error, "retryable": False}
            )
            await self.bus.publish([refused])

    async def _renew_leases(self) -> None:
        """One loop for every task in hand: tell JetStream the slow ones are still being worked on,
        so their ack wait (the lease) does not run out while the runner is alive."""
        interval = max(0.5, self.bus.settings.ack_wait_s / 3)
        while True:
            await asyncio.sleep(interval / 2)
            due = time.monotonic() - interval
            for key, (msg, since) in list(self.leases.items()):
                if since <= due and key in self.leases:
                    self.leases[key] = (msg, time.monotonic())
                    with contextlib.suppress(Exception):
                        await msg.in_progress()


def finished(
    task: c.StepDispatched,
    worker: str,
    *,
    ok: bool,
    output: Any = None,
    error: str | None = None,
    retryable: bool = True,
    started: float | None = None,
    retry_after_s: float | None = None,
    ask: c.ToolAsk | None = None,
) -> c.TaskFinished:
    """The outcome of one attempt; its id is the same for every report of that attempt. ``ask``
    is a tool's question (a failed attempt the executor turns into an approval gate)."""
    return c.TaskFinished(
        **task.caused(),
        event_id=uuid5(NAMESPACE_URL, f"baton:task:{task.attempt_key}"),
        **task.attempt_of(),
        ok=ok,
        output=output,
        error=error,
        retryable=retryable,
        duration_ms=(time.perf_counter() - started) * 1000 if started else 0.0,
        worker=worker,
        retry_after_s=retry_after_s,
        ask=ask,
    )


def input_problem(validator: Any, tool: str, value: dict[str, Any]) -> str | None:
    """What is wrong with a step's input for ``tool`` (its schema's ``validator``), or None."""
    errors = sorted(validator.iter_errors(value), key=str)
    if not errors:
        return None
    path = ".".join(str(p) for p in errors[0].absolute_path) or "input"
    return f"input does not fit {tool}: {path}: {errors[0].message}"
