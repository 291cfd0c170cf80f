"""A service's start, watched: a start that hangs names what it waits for, and ends.

CI once had an executor that logged its tool scan, never "ready", and ignored the SIGTERM of the
engine's stop; 21 tests waited behind it and nothing said where it stood. Now, from the process's
first await to "<name> ready" (``Runtime.serve_forever`` calls ``ready``):

- every ``STILL_EVERY_S`` the log says how long it has been starting and where it waits: the
  chain of coroutines the service's entry point is awaiting (``run_executor > serve_discovery >
  publish_scan > to_thread(scan_isolated)``), innermost last;
- past ``BATON_START_TIMEOUT`` seconds it logs that line as an error, dumps every thread's stack
  and exits with ``NOT_READY`` (non-zero: ``baton up`` and Kubernetes start it again);
- if the event loop itself is blocked (a synchronous call that never returns: no coroutine can
  log), faulthandler's own thread dumps every thread's stack and exits the process
  ``GRACE_S`` later than that.

SIGTERM keeps its default disposition until the service is ready (its drain handler is set then,
``Runtime.serve_forever``): the kernel ends a process that is still starting whatever it is doing,
even with its event loop blocked. A handler set earlier would wait for the loop to run it.
"""

from __future__ import annotations

import asyncio
import contextvars
import faulthandler
import logging
import os
import sys
import time
from collections.abc import Awaitable
from types import CoroutineType
from typing import Any

log = logging.getLogger(__name__)

START_TIMEOUT_S = 180.0  # Settings.start_timeout_s: a tool scan alone may take 120 s (scanchild)
STILL_EVERY_S = 20.0  # how often a start that goes on says where it waits
GRACE_S = 30.0  # the blocked-loop backstop fires this long after the bound
END_S = 10.0  # how long the other tasks may take to end once the entry point returned or failed
NOT_READY = 75  # EX_TEMPFAIL: a service that did not become ready in its bound (try again)

WATCH: contextvars.ContextVar[StartWatch | None] = contextvars.ContextVar(
    "baton_start_watch", default=None
)


class StartWatch:
    """Watches one service's entry point until it says it is ready."""

    def __init__(self, name: str, bound: float, every: float = STILL_EVERY_S) -> None:
        self.name, self.bound, self.every = name, bound, every
        self.began = time.monotonic()
        self.task: asyncio.Task[Any] | None = None
        self.done = asyncio.Event()

    def ready(self) -> None:
        """The service serves: nothing to watch any more."""
        if not self.done.is_set():
            self.done.set()
            if self.bound > 0:
                faulthandler.cancel_dump_traceback_later()

    def where(self) -> str:
        """What the entry point awaits now, outermost first."""
        return awaiting(self.task.get_coro()) if self.task is not None else "not started"

    async def watch(self) -> None:
        """Say where the start waits every ``every`` seconds; give up past the bound."""
        while True:
            try:
                await asyncio.wait_for(self.done.wait(), self._next_wait())
                return
            except TimeoutError:
                pass
            waited = time.monotonic() - self.began
            if self.bound > 0 and waited >= self.bound:
                self.give_up(waited)
                return
            log.warning(
                "%s still starting after %.0f s: waiting in %s", self.name, waited, self.where()
            )

    def _next_wait(self) -> float:
        waited = time.monotonic() - self.began
        left = self.bound - waited if self.bound > 0 else self.every
        return max(0.0, min(self.every, left))

    def give_up(self, waited: float) -> None:
        """Log where it waits, dump every thread's stack, exit ``NOT_READY``: a start that did
        not finish in its bound cannot be trusted to unwind (a thread may be stuck in a call)."""
        log.error(
            "%s did not become ready within %.0f s (BATON_START_TIMEOUT): waiting in %s; "
            "exiting (%d) to be started again",
            self.name,
            waited,
            self.where(),
            NOT_READY,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        sys.stderr.flush()
        faulthandler.dump_traceback(all_threads=True)
        os._exit(NOT_READY)


async def watched(
    name: str,
    main: Awaitable[Any],
    bound: float = START_TIMEOUT_S,
    *,
    every: float = STILL_EVERY_S,
    grace: float = GRACE_S,
) -> Any:
    """Run the service entry point ``main`` with its start watched (``StartWatch``; ``bound``:
    seconds to become ready, 0 for none; ``every``: seconds between two "still starting" lines;
    ``grace``: how much later the blocked-loop backstop fires); what it returns."""
    watch = StartWatch(name, bound, every)
    if watch.bound > 0:  # the event loop blocked: no coroutine of ours would run
        faulthandler.dump_traceback_later(watch.bound + grace, exit=True)
    token = WATCH.set(watch)  # the entry point's task copies this context: ready() finds it
    try:
        watch.task = asyncio.ensure_future(main)
    finally:
        WATCH.reset(token)
    watcher = asyncio.create_task(watch.watch(), name=f"start watch:{name}")
    try:
        return await watch.task
    except Exception:
        log.exception("%s failed", name)  # now: the process may not get to print it later
        raise
    finally:
        watch.ready()
        watcher.cancel()
        await end_tasks(name)


async def end_tasks(name: str, within: float = END_S) -> None:
    """Cancel every other task of the loop and wait ``within`` seconds for them to end; exit
    the process (1) naming those that did not. asyncio's own end of a loop waits for ever for a
    task that does not end when cancelled: a failed start then hung with no traceback printed
    and, its drain handler set, ignored SIGTERM (reproduced: the health port's bind failed)."""
    me = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not me]
    for task in tasks:
        task.cancel()
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=within)
    if not late:
        return
    for task in late:
        log.error(
            "%s: task %s did not end within %.0f s of being cancelled: waiting in %s",
            name,
            task.get_name(),
            within,
            awaiting(task.get_coro()),
        )
    for handler in logging.getLogger().handlers:
        handler.flush()
    faulthandler.dump_traceback(all_threads=True)
    os._exit(1)


def ready() -> None:
    """The service of this task's context is ready (no-op when its start is not watched)."""
    if (watch := WATCH.get()) is not None:
        watch.ready()


def awaiting(coro: Any) -> str:
    """``run_executor (main.py:54) > publish_scan (extensions.py:41) > Future``: the coroutines
    that ``coro`` awaits, one inside the other, each with its file and line, then what the
    innermost awaits when it is not a coroutine (a future, a task, a thread's result)."""
    chain: list[str] = []
    seen = 0
    while coro is not None and seen < 50:
        seen += 1
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            chain.append(_describe(coro))
            break
        code = frame.f_code
        chain.append(f"{code.co_name} ({os.path.basename(code.co_filename)}:{frame.f_lineno})")
        awaited = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        inner = frame.f_locals.get("fut") if code.co_name == "wait_for" else None
        coro = inner if isinstance(inner, asyncio.Task) and awaited is not inner else awaited
    return " > ".join(chain) or "nothing"


def _describe(awaited: Any) -> str:
    """A future, a task or another awaitable, in a few words."""
    if isinstance(awaited, asyncio.Task):
        return f"task {awaited.get_name()} ({awaiting(awaited.get_coro())})"
    if isinstance(awaited, CoroutineType):
        return awaited.__qualname__
    if type(awaited).__name__ == "FutureIter":  # a future's await: its frames said which
        return "a future"
    text = repr(awaited)
    return text if len(text) <= 200 else text[:200] + "…"
