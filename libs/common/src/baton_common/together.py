"""Several services in one process (``baton serve a b …``, what ``baton up --one-process`` runs).

Each service runs as it does alone (its own bus connection, store, relay, settings and health
port, the same subjects and tables) but as an asyncio task of one process: one interpreter and one
copy of the libraries instead of one per service. What a service would own for the whole process
when alone is owned here instead: the signal handlers (one SIGTERM drains them all), the thread
pool behind ``asyncio.to_thread`` (sized for all of them) and the tracer provider. A service that
ends (a crash, a bad setting) stops the others: the process exits non-zero and its supervisor
starts it again, as it would restart one service's process.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from baton_common import logs, telemetry
from baton_common.settings import Settings

log = logging.getLogger(__name__)

Main = Callable[[Settings], Awaitable[None]]

# Once stopped, how long the services have to drain before what is left is cancelled (a
# supervisor waits 30 s before it kills).
DRAIN_S = 25.0


class Together:
    """The runtimes serving in this process: stopping the group stops every one of them,
    including a runtime that joins later (it was still starting)."""

    def __init__(self) -> None:
        self.stopping: list[asyncio.Event] = []
        self.serving: set[asyncio.Task[Any]] = set()  # the service tasks that reached serving
        self.asked = asyncio.Event()

    @property
    def stopped(self) -> bool:
        return self.asked.is_set()

    def join(self, stopping: asyncio.Event) -> None:
        """A runtime starts serving (in its service's task): ``stopping`` ends it."""
        self.stopping.append(stopping)
        if (task := asyncio.current_task()) is not None:
            self.serving.add(task)
        if self.stopped:
            stopping.set()

    def stop(self) -> None:
        self.asked.set()
        for event in self.stopping:
            event.set()


# The group a runtime belongs to, when its process serves several (set per service task).
GROUP: contextvars.ContextVar[Together | None] = contextvars.ContextVar(
    "baton_serving_together", default=None
)


class ServiceEnded(Exception):
    """A service of the group returned or failed while the others were serving."""


async def serve_together(mains: dict[str, Main], settings: Settings, ports: dict[str, int]) -> int:
    """Run every ``mains`` entry (a name, e.g. ``worker#2``, and its service's entry point) in
    this process until SIGTERM/SIGINT or until one of them ends; 0 on a clean stop, else 1.
    ``ports``: each service's health port (``BATON_HEALTH_PORT`` when it runs alone)."""
    loop = asyncio.get_running_loop()
    # Each service alone has a pool of cores + 4 threads for its blocking store calls; sharing
    # one such pool, a busy service would make the others' calls queue behind its own.
    threads = min(64, ((os.cpu_count() or 1) + 4) * len(mains))
    loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="baton"))
    telemetry.setup("engine")  # one tracer provider per process: theirs is this one
    group = Together()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, group.stop)
    tasks = {_start(n, main, settings, ports.get(n), group): n for n, main in mains.items()}
    log.info("serving %s in one process (pid %d)", ", ".join(mains), os.getpid())
    asked = asyncio.ensure_future(group.asked.wait())
    await asyncio.wait([*tasks, asked], return_when=asyncio.FIRST_COMPLETED)
    done = {task for task in tasks if task.done()}
    failed = not group.stopped
    if failed:
        for task in done:
            log.error("%s ended (%s): stopping the others", tasks[task], _why(task) or "returned")
        group.stop()
    await asked
    for task in tasks.keys() - group.serving:
        # Still starting: nothing in hand to drain. Alone, SIGTERM would have ended its
        # process there (its handler is set once it serves); what it did is in its store.
        task.cancel()
    clean = await _drain(tasks, reported=done if failed else set())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(sig)
    return 0 if clean and not failed else 1


async def _drain(tasks: dict[asyncio.Task[None], str], reported: set[asyncio.Task[None]]) -> bool:
    """Wait for every service to stop, cancelling those still running after ``DRAIN_S``;
    True when each stopped as asked (``reported``: those whose end was logged already)."""
    _, late = await asyncio.wait(tasks, timeout=DRAIN_S)
    for task in late:
        log.warning("%s did not drain within %.0f s: cancelled", tasks[task], DRAIN_S)
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    stopped = [t for t in tasks if t not in late and t not in reported and not t.cancelled()]
    failures = [(tasks[t], why) for t in stopped if (why := _why(t))]
    for name, why in failures:
        log.error("%s failed while stopping: %s", name, why)
    return not late and not failures


def _start(
    name: str, main: Main, settings: Settings, port: int | None, group: Together
) -> asyncio.Task[None]:
    """The service's task, in a context of its own: its log records say its name, and its
    runtime joins ``group`` instead of taking the process's signals."""
    own = settings.model_copy(update={"health_port": port})
    context = contextvars.copy_context()
    context.run(GROUP.set, group)
    context.run(logs.serving_as, name)
    return asyncio.create_task(_guarded(name, main, own), name=name, context=context)


async def _guarded(name: str, main: Main, settings: Settings) -> None:
    try:
        await main(settings)
    except SystemExit as exc:  # a service's bad setting (it exits when alone): this task only
        raise ServiceEnded(f"{name}: {exc}") from None


def _why(task: asyncio.Task[Any]) -> str:
    """Why a finished service task ended ('' when it stopped as asked)."""
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return f"{type(exc).__name__}: {exc}" if exc else ""
