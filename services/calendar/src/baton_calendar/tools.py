"""The calendar tools' worker: a durable pull consumer of dispatched steps, for calendar.* tools.

It takes tasks like the generic workers do (which leave calendar.* tasks to it): a task is held
like a lease (in-progress heartbeats while it runs), the call's outcome is reported as
``task.finished`` with an id derived from (execution, step, attempt, kind) so a repeated report is
dropped by the server, and the message is acked only after that. A process killed mid-call
leaves the task unacked: after the lease it is delivered again, and the same idempotency key
gives the same UID, so the event is found (or written again in place), never made twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.consumer import Puller
from baton_common.events import EventDecodeError, registry
from baton_common.telemetry import context_from, tracer
from baton_common.tracing import step_attributes, step_finished
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api
from nats.js.errors import FetchTimeoutError

from baton_calendar.application import CalendarApp
from baton_calendar.errors import AskFirst, CalendarError

log = logging.getLogger(__name__)
DURABLE = "calendar-tools"
PREFIX = "calendar."
MAX_DELIVERIES = 5
CONCURRENCY = 16  # calendar calls in flight (a fetch may go a little over: at most FETCH)
FETCH = 256
# Every dispatched step comes here too (a task's tool is not in its subject): a byte test skips
# the others without decoding them. Pydantic writes JSON without spaces or escapes for ASCII.
CALENDAR_TOOL = b'"tool":"calendar.'


def operations(app: CalendarApp) -> dict[str, Callable[..., dict[str, Any]]]:
    """Tool name → the application's call (workspace, input, idempotency key, envelope)."""
    return {
        "calendar.create_event": app.create_event,
        "calendar.update_event": app.update_event,
        "calendar.cancel_event": app.cancel_event,
        "calendar.list_events": lambda ws, data, key, **_: app.list_events(ws, data),
        "calendar.find_slots": lambda ws, data, key, **_: app.find_slots(ws, data),
        "calendar.check_conflicts": lambda ws, data, key, **_: app.check_conflicts(ws, data),
    }


class ToolWorker:
    """Runs calendar tool calls from the ``calendar-tools`` consumer."""

    def __init__(self, bus: Bus, app: CalendarApp) -> None:
        self.bus, self.app = bus, app
        self.ops = operations(app)
        self.name = f"calendar@{socket.gethostname()}:{os.getpid()}"
        self.running: set[asyncio.Task[None]] = set()
        self.completed = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        s = self.bus.settings
        config = api.ConsumerConfig(
            durable_name=DURABLE,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=s.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=10_000,
            filter_subject=f"{s.subject_root}.*.execution.step_dispatched",
        )
        with contextlib.suppress(Exception):
            await self.bus.js.add_consumer(s.stream, config=config)
        self.sub = await self.bus.js.pull_subscribe_bind(durable=DURABLE, stream=s.stream)
        self.puller = Puller(self.sub)
        self._task = asyncio.create_task(self._run(), name="calendar-tools")

    async def stop(self) -> None:
        """Take nothing new; let the calls in hand finish and report (SIGTERM drain)."""
        self._stopping = True
        if self._task:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.running:
            await asyncio.wait(self.running, timeout=60)
        with contextlib.suppress(Exception):
            await self.sub.unsubscribe()

    async def _run(self) -> None:
        while not self._stopping:
            free = CONCURRENCY - len(self.running)
            if free <= 0:
                await asyncio.sleep(0.01)
                continue
            try:
                msgs = await self.puller.fetch(FETCH, timeout=0.5)
            except (FetchTimeoutError, NatsTimeoutError, TimeoutError):
                continue
            except Exception as exc:
                log.warning("calendar tools: fetch failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                if CALENDAR_TOOL not in msg.data:  # most tasks are not ours: no decoding them
                    await msg.ack()
                    continue
                task = asyncio.create_task(self._take(msg))
                self.running.add(task)
                task.add_done_callback(self.running.discard)

    async def _take(self, msg: Msg) -> None:
        try:
            task = registry().decode(msg.data)
        except EventDecodeError:
            await msg.ack()  # the generic workers park it; one parked copy is enough
            return
        if not isinstance(task, c.StepDispatched) or not task.tool.startswith(PREFIX):
            await msg.ack()  # another worker's task
            return
        if task.simulated is not None and not task.simulated.get("real"):
            await msg.ack()  # a dry run's stand-in: the generic workers answer it
            return
        result = await self._result_of(task, msg)
        try:
            await self.bus.publish([result])
        except Exception as exc:  # cannot report: the lease runs out and the task comes back
            log.warning("could not report %s: %s", task.idempotency_key, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=1.0)
            return
        await msg.ack()
        self.completed += 1

    async def _result_of(self, task: c.StepDispatched, msg: Msg) -> c.TaskFinished:
        deliveries = msg.metadata.num_delivered
        if deliveries > MAX_DELIVERIES:
            error = f"the calendar service lost the step {deliveries - 1} times (crash or kill)"
            return _finished(task, self.name, ok=False, error=error, retryable=False)
        with tracer().start_as_current_span(
            f"step {task.step_id} {task.tool}",
            context=context_from(msg.headers),
            attributes=step_attributes(task),
        ) as span:
            heartbeat = asyncio.create_task(_keep_lease(msg, self.bus.settings.ack_wait_s))
            try:
                return step_finished(span, await self._call(task))
            finally:
                heartbeat.cancel()

    async def _call(self, task: c.StepDispatched) -> c.TaskFinished:
        started = time.perf_counter()
        op = self.ops.get(task.tool)
        if op is None:
            error = f"the calendar service has no tool {task.tool!r}"
            return _finished(task, self.name, ok=False, error=error, retryable=False)
        problem = _input_problem(task)
        if problem is not None:  # references resolved at run time may not fit: say which field
            return _finished(task, self.name, ok=False, error=problem, retryable=False)
        envelope = task.caused()
        envelope.pop("workspace_id")
        try:
            output = await asyncio.wait_for(
                asyncio.to_thread(
                    op, task.workspace_id, task.input, task.idempotency_key, **envelope
                ),
                task.timeout_s,
            )
        except AskFirst as exc:  # the executor opens a gate with the question
            return _finished(
                task,
                self.name,
                ok=False,
                error=exc.detail,
                retryable=False,
                started=started,
                ask=c.ToolAsk.model_validate(exc.ask),
            )
        except CalendarError as exc:
            return _finished(
                task,
                self.name,
                ok=False,
                error=exc.detail,
                retryable=exc.retryable,
                started=started,
            )
        except TimeoutError:
            error = f"timed out after {task.timeout_s:g}s"
            return _finished(task, self.name, ok=False, error=error, started=started)
        except Exception as exc:  # a bug is still a result, never a lost step
            log.exception("calendar tool %s crashed", task.tool)
            return _finished(
                task, self.name, ok=False, error=f"{type(exc).__name__}: {exc}", started=started
            )
        return _finished(task, self.name, ok=True, output=output, started=started)


def _input_problem(task: c.StepDispatched) -> str | None:
    spec = DEFAULT_CATALOGUE.get(task.tool)
    errors = sorted(spec.input_validator().iter_errors(task.input), key=str) if spec else []
    if not errors:
        return None
    path = ".".join(str(p) for p in errors[0].absolute_path) or "input"
    return f"input does not fit {task.tool}: {path}: {errors[0].message}"


async def _keep_lease(msg: Msg, ack_wait_s: float) -> None:
    """Tell JetStream the task is still being worked on, so its lease does not run out."""
    while True:
        await asyncio.sleep(max(0.3, ack_wait_s / 3))
        with contextlib.suppress(Exception):
            await msg.in_progress()


def _finished(
    task: c.StepDispatched,
    worker: str,
    *,
    ok: bool,
    output: Any = None,
    error: str | None = None,
    retryable: bool = True,
    started: float | None = None,
    ask: c.ToolAsk | None = None,
) -> c.TaskFinished:
    key = f"{task.aggregate_id}:{task.step_id}:{task.attempt}:{task.kind}"
    return c.TaskFinished(
        **task.caused(),
        event_id=uuid5(NAMESPACE_URL, f"baton:task:{key}"),  # the generic workers' rule
        aggregate_id=task.aggregate_id,
        step_id=task.step_id,
        attempt=task.attempt,
        kind=task.kind,
        ok=ok,
        output=output,
        error=error,
        retryable=retryable,
        duration_ms=(time.perf_counter() - started) * 1000 if started else 0.0,
        worker=worker,
        ask=ask,
    )
