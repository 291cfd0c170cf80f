"""Memory given back after bursts (issue 32): the C heap is trimmed once a consumer caught up
after a burst, not after every batch; the embedded servers' memory settings."""

from __future__ import annotations

import sys

import pytest
from baton_common import heap
from baton_common.embedded import _go_memory_limit


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "_handled", 0)
    monkeypatch.setattr(heap, "_trimmed_at", -heap.TRIM_GAP_S)
    monkeypatch.setattr(heap, "_mark", None)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_a_burst_is_trimmed_once_caught_up_and_not_again_at_once() -> None:
    heap.handled(heap.TRIM_AFTER - 1)
    assert not heap.caught_up()  # a few batches are no burst
    heap.handled(1)
    assert heap.caught_up()
    heap.handled(heap.TRIM_AFTER)
    assert not heap.caught_up()  # within TRIM_GAP_S of the last trim


def test_growth_since_the_last_trim_is_trimmed_once_and_an_idle_process_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rss, free, trims = [100 << 20], [1 << 20], []
    monkeypatch.setattr(heap, "resident_bytes", lambda: rss[0])
    monkeypatch.setattr(heap, "free_bytes", lambda: free[0])
    monkeypatch.setattr(heap, "_malloc_trim", lambda: trims.append)
    assert not heap.trim_if_grown()  # the first look sets the mark
    rss[0] += heap.TRIM_GROWTH - 1
    assert not heap.trim_if_grown() and trims == []  # small growth: no walk of the heap
    rss[0] += 1
    assert heap.trim_if_grown() and trims == [0]  # a burst no consumer saw (HTTP, timers)
    assert not heap.trim_if_grown() and trims == [0]  # idle: nothing more
    free[0] += heap.TRIM_GROWTH  # the burst ended: its memory freed, the resident size as it was
    assert heap.trim_if_grown() and trims == [0, 0]
    rss[0] -= 50 << 20
    assert not heap.trim_if_grown()  # memory went back by itself: a lower mark
    rss[0] += heap.TRIM_GROWTH
    assert heap.trim_if_grown() and trims == [0, 0, 0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_the_resident_size_and_the_free_bytes_are_read() -> None:
    assert heap.resident_bytes() > 1 << 20
    assert heap.free_bytes() > 0  # glibc's mallinfo2 (2.33 and later)


def test_nats_server_gets_a_memory_limit_unless_told_otherwise() -> None:
    assert _go_memory_limit({})["GOMEMLIMIT"] == "64MiB"
    assert _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "256MiB"})["GOMEMLIMIT"] == "256MiB"
    assert "GOMEMLIMIT" not in _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "0"})
    assert _go_memory_limit({"GOMEMLIMIT": "1GiB"})["GOMEMLIMIT"] == "1GiB"
    assert "BATON_NATS_MEMORY_LIMIT" not in _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "1"})
