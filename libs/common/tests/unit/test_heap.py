"""Memory given back after bursts (issue 32): the C heap is trimmed once a consumer caught up
after a burst, not after every batch; the embedded servers' memory settings."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from baton_common import heap
from baton_common.embedded import _go_memory_limit, _shared_buffers


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
    assert _go_memory_limit({})["GOMEMLIMIT"] == "32MiB"
    assert _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "256MiB"})["GOMEMLIMIT"] == "256MiB"
    assert "GOMEMLIMIT" not in _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "0"})
    assert _go_memory_limit({"GOMEMLIMIT": "1GiB"})["GOMEMLIMIT"] == "1GiB"
    assert "BATON_NATS_MEMORY_LIMIT" not in _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "1"})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGUSR2, /proc")
def test_a_dump_on_sigusr2_says_what_the_process_holds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BATON_HEAP_DUMP", str(tmp_path))
    monkeypatch.setenv("BATON_HEAP_DUMP_FRAMES", "0")  # no tracing in the test process
    monkeypatch.setenv("BATON_HEAP_DUMP_HOLDERS", "Pattern")
    before = signal.getsignal(signal.SIGUSR2)
    try:
        heap.install_dump("probe")
        kept = [re.compile(f"kept-{i}") for i in range(3)]  # noqa: F841  (live while it dumps)
        os.kill(os.getpid(), signal.SIGUSR2)
    finally:
        signal.signal(signal.SIGUSR2, before)
    (dump,) = tmp_path.glob("probe-*-0.txt")
    text = dump.read_text()
    assert "## live objects by type" in text and "mallinfo2 arena_kb=" in text
    assert "## what holds a Pattern" in text


_LARGE_AFTER_LARGE = """
import sys
from baton_common import heap
if sys.argv[1] == "tuned":
    assert heap.tune_malloc()
heap.free_bytes()  # binds mallinfo2
big = bytearray(4 << 20)
del big  # mapped and unmapped; by default the threshold now rises to 4 MB
before = heap._mallinfo2().hblkhd
big = bytearray(1 << 20)
print(heap._mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("tuned", [True, False], ids=["tuned", "glibc-default"])
def test_a_large_buffer_after_a_larger_one_is_still_mapped_on_its_own(tuned: bool) -> None:
    """A burst's large buffers go back to the system when freed (``tune_malloc``): by default
    glibc raises its threshold to the largest block freed, and the next ones stay in the heap."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    mode = "tuned" if tuned else "default"
    out = subprocess.run(
        [sys.executable, "-c", _LARGE_AFTER_LARGE, mode], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert (int(out.stdout) >= 1 << 20) is tuned


def test_the_embedded_postgresql_keeps_a_small_page_cache_unless_told() -> None:
    assert _shared_buffers({}) == "16MB"
    assert _shared_buffers({"BATON_PG_SHARED_BUFFERS": "128MB"}) == "128MB"
