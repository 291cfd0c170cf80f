"""Several services in one process (``together``): one of them ending stops the others, a
stop reaches a service that joins late, one still starting is cancelled, not waited for, and
each service's log records say its name."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from baton_common import logs, together
from baton_common.settings import Settings


def service(seen: dict[str, object]) -> together.Main:
    """A service that records its settings and log name, then serves until its group stops."""

    async def main(settings: Settings) -> None:
        stopping = asyncio.Event()
        group = together.GROUP.get()
        assert group is not None
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "hello", None, None)
        logs.ContextFilter("engine").filter(record)
        seen[record.service] = settings.health_port  # type: ignore[attr-defined]
        group.join(stopping)
        await stopping.wait()

    return main


async def test_a_service_that_ends_stops_the_others_and_the_process_fails() -> None:
    seen: dict[str, object] = {}

    async def bad(_settings: Settings) -> None:
        await asyncio.sleep(0.05)
        raise SystemExit("planner: BATON_PLANNER is not one of offline, gemini, openai")

    mains = {"executor": service(seen), "worker#2": service(seen), "planner": bad}
    code = await asyncio.wait_for(
        together.serve_together(mains, Settings(), {"executor": 9101}), 10
    )
    assert code == 1
    assert seen == {"executor": 9101, "worker#2": None}  # each its own settings and name


async def test_a_stop_reaches_a_service_still_starting() -> None:
    group = together.Together()
    group.stop()
    late = asyncio.Event()
    group.join(late)
    assert late.is_set()


async def test_sigterm_drains_every_service_and_the_process_ends_cleanly() -> None:
    seen: dict[str, object] = {}
    starting: list[str] = []

    async def slow(_settings: Settings) -> None:  # still starting when the stop comes
        starting.append("started")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            starting.append("cancelled")
            raise

    mains = {"hitl": service(seen), "scheduler": service(seen), "executor": slow}
    running = asyncio.create_task(together.serve_together(mains, Settings(), {}))
    while len(seen) < 2:
        await asyncio.sleep(0.01)
    os.kill(os.getpid(), signal.SIGTERM)  # the group's handler, not the default (exit)
    assert await asyncio.wait_for(running, 10) == 0  # not DRAIN_S: nothing waited for it
    assert starting == ["started", "cancelled"]
