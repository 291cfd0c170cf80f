"""The runtime's lag sample for ``/metrics``: consumer backlogs, stream depths and the relay's
committed-but-unpublished events become the gauges of ``perf``; a failed read keeps the last."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from baton_common import perf
from baton_common.service import sample_lag
from baton_common.settings import Settings


class FakeJetStream:
    def __init__(self) -> None:
        self.fail = False

    async def consumer_info(self, stream: str, name: str) -> Any:
        if self.fail:
            raise RuntimeError("server gone")
        return SimpleNamespace(num_pending=7, num_ack_pending=2, num_redelivered=1)

    async def stream_info(self, stream: str) -> Any:
        if self.fail:
            raise RuntimeError("server gone")
        return SimpleNamespace(state=SimpleNamespace(messages=40 if "DLQ" not in stream else 3))


def _gauge(name: str, **labels: str) -> float | None:
    return perf.REGISTRY.get_sample_value(name, labels)


async def test_lag_and_depths_are_sampled_and_a_failed_read_keeps_the_last_value() -> None:
    js = FakeJetStream()
    bus = SimpleNamespace(settings=Settings(BATON_STREAM="LAGTEST"), js=js)
    relay = SimpleNamespace(
        name="lagtest", position=90, store=SimpleNamespace(max_position=lambda: 100)
    )
    await sample_lag(bus, ["lagtest-consumer"], relay)  # type: ignore[arg-type]
    assert _gauge("baton_consumer_pending_messages", consumer="lagtest-consumer") == 7
    assert _gauge("baton_consumer_ack_pending_messages", consumer="lagtest-consumer") == 2
    assert _gauge("baton_stream_messages", stream="LAGTEST") == 40
    assert _gauge("baton_relay_lag_events", relay="lagtest") == 10
    js.fail = True
    await sample_lag(bus, ["lagtest-consumer"], relay)  # type: ignore[arg-type]
    assert _gauge("baton_consumer_pending_messages", consumer="lagtest-consumer") == 7
