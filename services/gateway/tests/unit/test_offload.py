"""Checks of user input run off the event loop, a few at a time, within a budget."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from baton_common.plans import PlanInvalid, read_plan
from baton_gateway import offload
from baton_gateway.domain import Busy, Invalid
from baton_gateway.offload import checked, off_loop


@pytest.fixture
def one_worker(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """One checking thread and a 0.3 s budget; the event releases checks left waiting."""
    monkeypatch.setenv("BATON_CHECK_WORKERS", "1")
    monkeypatch.setenv("BATON_CHECK_BUDGET_S", "0.3")
    offload._pool.cache_clear()
    release = threading.Event()
    yield release
    release.set()
    offload._pool()[0].shutdown(wait=True)
    offload._pool.cache_clear()


async def test_a_check_runs_in_the_checking_pool_and_its_errors_pass_through() -> None:
    assert await off_loop(lambda: threading.current_thread().name) != "MainThread"
    with pytest.raises(PlanInvalid, match="aliases"):
        await off_loop(read_plan, "steps: &s [{id: a, tool: mock.agent}]\nmore: *s\n")


async def test_the_loop_keeps_answering_while_a_check_burns_the_cpu() -> None:
    def burn() -> int:
        end, n = time.perf_counter() + 0.6, 0
        while time.perf_counter() < end:
            n += 1
        return n

    gaps: list[float] = []

    async def tick() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            gaps.append(time.perf_counter() - before)

    ticker = asyncio.create_task(tick())
    assert await off_loop(burn) > 0
    ticker.cancel()
    assert len(gaps) > 10  # the loop ran all along (on the loop itself: one gap of 0.6 s)
    assert max(gaps) < 0.3


async def test_a_check_past_its_budget_is_a_422_and_one_that_cannot_start_a_503(
    one_worker: threading.Event,
) -> None:
    slow = asyncio.ensure_future(off_loop(one_worker.wait, 5))
    waiting = asyncio.ensure_future(off_loop(lambda: "never"))
    with pytest.raises(Invalid, match=r"took more than 0\.3 s to check") as err:
        await slow
    assert err.value.status == 422
    with pytest.raises(Busy, match="busy checking other documents") as busy:
        await waiting
    assert busy.value.status == 503


async def test_a_small_document_is_checked_on_the_loop_and_a_large_or_unsized_one_off_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def where() -> str:
        return threading.current_thread().name

    assert await checked(4096, where) == "MainThread"
    assert await checked(4097, where) != "MainThread"
    assert await checked(None, where) != "MainThread"  # a chunked body: its size is unknown
    with pytest.raises(PlanInvalid, match="unknown tool"):  # errors pass through on the loop
        await checked(100, read_plan, {"steps": [{"id": "a", "tool": "no.such", "input": {}}]})
    monkeypatch.setenv("BATON_CHECK_INLINE_BYTES", "0")
    offload.inline_bytes.cache_clear()
    try:
        assert await checked(10, where) != "MainThread"
    finally:
        offload.inline_bytes.cache_clear()
