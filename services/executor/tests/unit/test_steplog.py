"""The step logger: lines are cut and dropped by the attempt's limits, the drop is marked, and
chunks have ids that a re-send repeats (so the server drops the duplicate)."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from baton_common import contracts as c
from baton_executor.steplog import StepLogger, StepLogLimits, current, install_handler
from baton_executor.tools.base import ToolContext
from baton_executor.tools.debug import DebugLog


class FakeBus:
    """Collects published events (the real bus is in the e2e tests)."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def publish(self, events: list[Any]) -> None:
        self.sent += events


def task(step: str = "a") -> c.StepDispatched:
    return c.StepDispatched(
        aggregate_id=uuid4(),
        step_id=step,
        attempt=1,
        tool="debug.log",
        input={},
        idempotency_key=f"x:{step}",
        timeout_s=5,
    )


def lines(events: list[c.StepLogged]) -> list[str]:
    return [line.message for e in events for line in e.lines]


async def test_lines_are_sent_in_chunks_before_close_returns() -> None:
    bus = FakeBus()
    log = StepLogger(bus, task())  # type: ignore[arg-type]
    log.info("hello %s", "world")
    log.error("boom")
    await log.close()
    assert lines(bus.sent) == ["hello world", "boom"]
    assert [line.level for line in bus.sent[0].lines] == ["info", "error"]
    log.info("after close")
    await log.close()
    assert len(bus.sent) == 1


async def test_a_flood_is_bounded_and_marked() -> None:
    bus = FakeBus()
    limits = StepLogLimits(max_lines=50, max_line_chars=10, rate=1e9, burst=1_000_000)
    log = StepLogger(bus, task(), limits)  # type: ignore[arg-type]
    ctx = ToolContext("e", "a", 1, "k", log=log)
    out = await DebugLog().run({"message": "x" * 20, "lines": 10_000}, ctx)
    await log.close()
    assert out == {"written": 10_000}
    sent = lines(bus.sent)
    assert len(sent) == 50 and all(len(t) == 11 and t.endswith("…") for t in sent)
    assert all(line.cut for e in bus.sent for line in e.lines)
    assert sum(e.dropped for e in bus.sent) == 10_000 - 50
    assert bus.sent[-1].dropped and bus.sent[-1].limit == "50 lines per attempt"


async def test_the_rate_limit_drops_a_burst_and_says_so() -> None:
    bus = FakeBus()
    log = StepLogger(bus, task(), StepLogLimits(rate=1, burst=5))  # type: ignore[arg-type]
    for n in range(20):
        log.info("line %d", n)
    await log.close()
    assert lines(bus.sent) == [f"line {n}" for n in range(5)]
    assert bus.sent[-1].dropped == 15 and bus.sent[-1].limit == "1 lines/s"


async def test_chunk_ids_repeat_for_the_same_attempt() -> None:
    t = task()
    first, again = FakeBus(), FakeBus()
    for bus in (first, again):
        log = StepLogger(bus, t)  # type: ignore[arg-type]
        log.info("one")
        await log.close()
    assert first.sent[0].event_id == again.sent[0].event_id


async def test_lines_flush_while_the_step_still_runs() -> None:
    bus = FakeBus()
    log = StepLogger(bus, task())  # type: ignore[arg-type]
    log.info("early")
    for _ in range(50):
        if bus.sent:
            break
        await asyncio.sleep(0.05)
    assert lines(bus.sent) == ["early"]
    await log.close()


async def test_python_logging_inside_the_step_reaches_its_log() -> None:
    import logging

    install_handler()
    bus = FakeBus()
    log = StepLogger(bus, task())  # type: ignore[arg-type]
    token = current.set(log)
    try:
        logging.getLogger("some.library").warning("careful: %d", 3)
    finally:
        current.reset(token)
    logging.getLogger("some.library").warning("not in a step")
    await log.close()
    assert lines(bus.sent) == ["careful: 3"]


async def test_a_chunk_in_flight_when_the_step_ends_is_kept_in_order() -> None:
    class SlowBus(FakeBus):
        async def publish(self, events: list[Any]) -> None:
            await asyncio.sleep(0.3)
            self.sent += events

    bus = SlowBus()
    log = StepLogger(bus, task())  # type: ignore[arg-type]
    log.info("first")
    await asyncio.sleep(0.3)  # its chunk is being sent
    log.info("second")
    await log.close()
    assert lines(bus.sent) == ["first", "second"]
    assert [e.chunk for e in bus.sent] == [0, 1]
