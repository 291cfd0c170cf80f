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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_a_burst_is_trimmed_once_caught_up_and_not_again_at_once() -> None:
    heap.handled(heap.TRIM_AFTER - 1)
    assert not heap.caught_up()  # a few batches are no burst
    heap.handled(1)
    assert heap.caught_up()
    heap.handled(heap.TRIM_AFTER)
    assert not heap.caught_up()  # within TRIM_GAP_S of the last trim


def test_nats_server_gets_a_memory_limit_unless_told_otherwise() -> None:
    assert _go_memory_limit({})["GOMEMLIMIT"] == "64MiB"
    assert _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "256MiB"})["GOMEMLIMIT"] == "256MiB"
    assert "GOMEMLIMIT" not in _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "0"})
    assert _go_memory_limit({"GOMEMLIMIT": "1GiB"})["GOMEMLIMIT"] == "1GiB"
    assert "BATON_NATS_MEMORY_LIMIT" not in _go_memory_limit({"BATON_NATS_MEMORY_LIMIT": "1"})
