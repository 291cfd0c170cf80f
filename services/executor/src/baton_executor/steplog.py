"""The step logger: what a tool writes while it runs, sent live as ``log.step_logged`` events.

Writing a line never waits: it goes into the attempt's buffer, and a small task sends the buffer
as one event every ``FLUSH_S`` (or sooner when it fills). Each attempt is bounded, so a tool that
floods its log costs the engine no more than a well-behaved one:
- a line longer than ``max_line_chars`` is cut (and marked ``cut``);
- lines over the rate (a token bucket: ``rate`` lines/s, bursts of ``burst``) or over
  ``max_lines`` per attempt are dropped and counted; the next chunk says how many and why, and
  readers show that as a marker.
Chunks are published with ids derived from (execution, step, attempt, kind, chunk number), like
the task's result, so a chunk sent twice (a retry after a lost ack) is recorded once. The worker
awaits ``close()`` before it reports the result: an attempt's lines come before its outcome.

Python ``logging`` records written inside the tool's task (a library the tool calls) reach the
same logger through ``StepLogHandler``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.secretinputs import scrub
from baton_common.telemetry import current_traceparent

log = logging.getLogger(__name__)

FLUSH_S = 0.2
CHUNK_LINES = 200
LEVELS = {"debug", "info", "warning", "error"}
current: contextvars.ContextVar[StepLogger | None] = contextvars.ContextVar(
    "baton_step_logger", default=None
)


class StepLogLimits:
    """Per-attempt bounds, from the environment (``BATON_STEP_LOG_*``) or given."""

    def __init__(
        self,
        max_lines: int | None = None,
        max_line_chars: int | None = None,
        rate: float | None = None,
        burst: int | None = None,
    ) -> None:
        env = os.environ.get
        self.max_lines = max_lines or int(env("BATON_STEP_LOG_MAX_LINES", "1000"))
        self.max_line_chars = max_line_chars or int(env("BATON_STEP_LOG_LINE_CHARS", "2000"))
        self.rate = rate or float(env("BATON_STEP_LOG_RATE", "100"))
        self.burst = burst or int(env("BATON_STEP_LOG_BURST", "200"))


class _Levels:
    """``log.info(...)`` and its siblings, for a log whose ``write(level, message, *args)``
    does the work (the step's logger, and its thread-safe face for plugins' hooks)."""

    def write(self, level: str, message: str, *args: Any) -> None:
        raise NotImplementedError

    def debug(self, message: str, *args: Any) -> None:
        self.write("debug", message, *args)

    def info(self, message: str, *args: Any) -> None:
        self.write("info", message, *args)

    def warning(self, message: str, *args: Any) -> None:
        self.write("warning", message, *args)

    def error(self, message: str, *args: Any) -> None:
        self.write("error", message, *args)

    def __call__(self, message: str, *args: Any) -> None:
        self.write("info", message, *args)


class StepLogger(_Levels):
    """One attempt's log: ``info`` / ``warning`` / ``error`` / ``debug`` write a line."""

    def __init__(
        self,
        bus: Bus | None,
        task: c.StepDispatched | None,
        limits: StepLogLimits | None = None,
    ) -> None:
        self.bus = bus
        self.task = task
        self.limits = limits or StepLogLimits()
        self.pending: list[c.LogLine] = []
        self.written = 0  # lines accepted in this attempt
        self.dropped = 0  # lines dropped since the last chunk
        self.dropped_total = 0
        self.why: str | None = None
        self.chunk = 0
        self.tokens = float(self.limits.burst)
        self.refilled = time.monotonic()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        self._now = asyncio.Event()
        self.secrets: list[str] = []  # the call's opened secret inputs: never in a line

    # --- writing (never blocks) -------------------------------------------------------------

    def write(self, level: str, message: str, *args: Any) -> None:
        """Keep the line if the attempt's limits allow it; count it as dropped otherwise."""
        if self._closed:
            return
        if why := self._over_limit():
            self.dropped += 1
            self.dropped_total += 1
            self.why = why
            return
        text = scrub(_format(message, args), self.secrets)
        cut = len(text) > self.limits.max_line_chars
        if cut:
            text = text[: self.limits.max_line_chars] + "…"
        level = level if level in LEVELS else "info"
        self.pending.append(
            c.LogLine(at=datetime.now(UTC), level=level, message=text, cut=cut)  # type: ignore[arg-type]
        )
        self.written += 1
        if len(self.pending) >= CHUNK_LINES:
            self._now.set()
        self._wake()

    def _over_limit(self) -> str | None:
        if self.written >= self.limits.max_lines:
            return f"{self.limits.max_lines} lines per attempt"
        now = time.monotonic()
        self.tokens = min(
            float(self.limits.burst), self.tokens + (now - self.refilled) * self.limits.rate
        )
        self.refilled = now
        if self.tokens < 1:
            return f"{self.limits.rate:g} lines/s"
        self.tokens -= 1
        return None

    def _wake(self) -> None:
        if self.bus is None or self._flusher is not None:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: close() sends it all
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            with contextlib.suppress(TimeoutError):  # the interval, or sooner: full, or closing
                await asyncio.wait_for(self._now.wait(), FLUSH_S)
            if not self._closed:
                self._now.clear()
            await self.flush()
        finally:
            self._flusher = None
            if self.pending and not self._closed:
                self._wake()

    # --- sending ------------------------------------------------------------------------------

    def take(self) -> list[c.StepLogged]:
        """The pending lines as chunk events (at most ``CHUNK_LINES`` lines each)."""
        events = []
        while self.pending or self.dropped:
            lines, self.pending = self.pending[:CHUNK_LINES], self.pending[CHUNK_LINES:]
            events.append(self._event(lines, self.dropped, self.why if self.dropped else None))
            self.dropped = 0
        return events

    def _event(self, lines: list[c.LogLine], dropped: int, why: str | None) -> c.StepLogged:
        t = self.task
        assert t is not None, "a detached logger sends nothing"
        event = c.StepLogged(
            **t.caused(),
            event_id=uuid5(NAMESPACE_URL, f"baton:log:{t.attempt_key}:{self.chunk}"),
            **t.attempt_of(),
            tool=t.tool,
            chunk=self.chunk,
            lines=lines,
            dropped=dropped,
            limit=why,
        )
        if traceparent := current_traceparent():
            event = event.model_copy(update={"traceparent": traceparent})
        self.chunk += 1
        return event

    async def flush(self) -> None:
        """Send what is pending; a failure to send is logged and the lines are lost (they are a
        view of the step, not its state: the step's outcome never waits on them)."""
        if self.bus is None or self.task is None:
            return  # detached (unit tests): the lines stay in ``pending``
        events = self.take()
        if not events:
            return
        try:
            await self.bus.publish(events)
        except Exception as exc:
            log.warning("could not send %d log chunk(s) of %s: %s", len(events), self.key, exc)

    async def close(self) -> None:
        """Send the rest (with the drop marker, if any); later writes are ignored."""
        self._closed = True
        self._now.set()
        if self._flusher is not None:  # let a chunk in flight land first: chunks stay in order
            with contextlib.suppress(Exception):
                await self._flusher
        await self.flush()

    @classmethod
    def detached(cls) -> StepLogger:
        """A logger that only keeps its lines (a tool called outside a worker, in tests)."""
        return cls(None, None)

    @property
    def key(self) -> str:
        return self.task.idempotency_key if self.task else "-"


class ThreadSafeLog(_Levels):
    """A step's log for code that may run on another thread (plugins' hooks run in a pool of
    their own): each line is handed to the event loop that owns the logger, in order, so a
    hook's lines are sent before the attempt's logger closes."""

    def __init__(self, logger: StepLogger, loop: asyncio.AbstractEventLoop) -> None:
        self.logger, self.loop = logger, loop

    def write(self, level: str, message: str, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the step is over
            self.loop.call_soon_threadsafe(self.logger.write, level, message, *args)


class StepLogHandler(logging.Handler):
    """Python logging records from inside a step's task go to that step's log too."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = current.get()
        if logger is None or record.name.startswith(("baton_executor.", "nats")):
            return
        level = record.levelname.lower()
        try:
            logger.write(level if level in LEVELS else "error", record.getMessage())
        except Exception:
            self.handleError(record)


def install_handler() -> None:
    """Add the bridge to the root logger once (the worker process calls it at start)."""
    root = logging.getLogger()
    if not any(isinstance(h, StepLogHandler) for h in root.handlers):
        root.addHandler(StepLogHandler(logging.INFO))


def _format(message: str, args: tuple[Any, ...]) -> str:
    text = str(message)
    if args:
        try:
            text = text % args
        except (TypeError, ValueError):
            text = " ".join([text, *map(str, args)])
    return text
