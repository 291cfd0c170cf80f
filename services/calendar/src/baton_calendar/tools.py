"""The calendar tools' worker: the kit's worker loop on its own durable consumer, for
calendar.* tools (the generic workers leave them to it).

A task is held like a lease and its outcome reported once, as the generic workers do. A process
killed mid-call leaves the task unacked: after the lease it is delivered again, and the same
idempotency key gives the same UID, so the event is found (or written again in place), never
made twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.catalogue import DEFAULT_CATALOGUE
from baton_common.kit.toolrunner import ToolRunner, finished, input_problem

from baton_calendar.application import CalendarApp
from baton_calendar.errors import AskFirst, CalendarError

log = logging.getLogger(__name__)
DURABLE = "calendar-tools"
PREFIX = "calendar."
CONCURRENCY = 16  # calendar calls in flight
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
    """Runs calendar tool calls from the ``calendar-tools`` consumer (the kit's worker loop)."""

    def __init__(self, bus: Bus, app: CalendarApp) -> None:
        self.ops = operations(app)
        self.name = f"calendar@{socket.gethostname()}:{os.getpid()}"
        self.runner = ToolRunner(
            bus,
            DURABLE,
            self.name,
            self._call,
            takes=_ours,
            concurrency=CONCURRENCY,
            marker=CALENDAR_TOOL,
        )

    @property
    def completed(self) -> int:
        return self.runner.completed

    async def start(self) -> None:
        await self.runner.start()

    async def stop(self) -> None:
        """Take nothing new; let the calls in hand finish and report (SIGTERM drain)."""
        await self.runner.stop()

    async def _call(self, task: c.StepDispatched) -> c.TaskFinished:
        started = time.perf_counter()
        op = self.ops.get(task.tool)
        if op is None:
            error = f"the calendar service has no tool {task.tool!r}"
            return finished(task, self.name, ok=False, error=error, retryable=False)
        problem = _input_problem(task)
        if problem is not None:  # references resolved at run time may not fit: say which field
            return finished(task, self.name, ok=False, error=problem, retryable=False)
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
            return finished(
                task,
                self.name,
                ok=False,
                error=exc.detail,
                retryable=False,
                started=started,
                ask=c.ToolAsk.model_validate(exc.ask),
            )
        except CalendarError as exc:
            return finished(
                task,
                self.name,
                ok=False,
                error=exc.detail,
                retryable=exc.retryable,
                started=started,
            )
        except TimeoutError:
            error = f"timed out after {task.timeout_s:g}s"
            return finished(task, self.name, ok=False, error=error, started=started)
        except Exception as exc:  # a bug is still a result, never a lost step
            log.exception("calendar tool %s crashed", task.tool)
            return finished(
                task, self.name, ok=False, error=f"{type(exc).__name__}: {exc}", started=started
            )
        return finished(task, self.name, ok=True, output=output, started=started)


def _ours(task: c.StepDispatched) -> bool:
    """A calendar tool's step, unless a dry run's stand-in (the generic workers answer it)."""
    real = task.simulated is None or bool(task.simulated.get("real"))
    return task.tool.startswith(PREFIX) and real


def _input_problem(task: c.StepDispatched) -> str | None:
    spec = DEFAULT_CATALOGUE.get(task.tool)
    return input_problem(spec.input_validator(), task.tool, task.input) if spec else None
