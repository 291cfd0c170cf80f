"""The event stream is the transport, not the archive: it keeps its last seconds here (tiny
limits), PostgreSQL keeps everything, and a consumer the stream left behind catches up from it."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import nats
import psycopg
import pytest
from baton_common.testing import wait_until

pytestmark = pytest.mark.e2e

PLAN = {
    "name": "behind",
    "steps": [
        {"id": "a", "tool": "mock.agent", "input": {"task": "a", "output": {"n": 1}}},
        {"id": "b", "tool": "mock.agent", "input": {"task": "b"}, "depends_on": ["a"]},
    ],
}


def stream_info(engine: Engine) -> Any:
    async def read() -> Any:
        nc = await nats.connect(**engine.nats())
        try:
            return await nc.jetstream().stream_info("BATON_EVENTS")
        finally:
            await nc.close()

    return asyncio.run(read())


def stream_state(engine: Engine) -> Any:
    return stream_info(engine).state


def finished_in_store(engine: Engine, ids: list[str]) -> int:
    """Executions the executor's store says succeeded (the views cannot say: no projector)."""
    with psycopg.connect(engine.runtime()["database_url"]) as conn:
        row = conn.execute(
            "SELECT count(*) FROM executor_events WHERE topic = 'execution.succeeded'"
            " AND originator_id::text = ANY(%s)",
            (ids,),
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_projector_behind_the_streams_limits_catches_up_from_the_stores(own_engine: Any) -> None:
    engine: Engine = own_engine({"BATON_STREAM_MAX_AGE": "3"})
    config = stream_info(engine).config
    assert (config.max_age, config.duplicate_window) == (3.0, 3.0)
    assert config.max_bytes == 10 * 1024**3  # the default size limit
    first = engine.http.post(f"{engine.url}/v1/executions", json={"plan": PLAN}).json()["id"]
    assert engine.wait(first)["status"] == "succeeded"

    projector = engine.runtime()["pids"]["projector"]
    os.kill(projector, signal.SIGSTOP)  # a projector that falls behind: it takes nothing
    try:
        ids = [
            engine.http.post(f"{engine.url}/v1/executions", json={"plan": PLAN}).json()["id"]
            for _ in range(3)
        ]
        wait_until(lambda: finished_in_store(engine, ids) == 3, 60, "the executions finished")
        last = stream_state(engine).last_seq
        # The stream drops them (3 s old): what the projector was never given is gone from it.
        wait_until(lambda: stream_state(engine).first_seq > last, 30, "the stream dropped them")
    finally:
        # A stopped process dies of SIGKILL too (the fork server may reap it at once: no
        # SIGCONT after it); `baton up` starts it again.
        os.kill(projector, signal.SIGKILL)
    wait_until(lambda: engine.runtime()["pids"]["projector"] != projector, 30, "a new projector")
    for eid in ids:
        view = engine.wait(eid, timeout=60)
        assert view["status"] == "succeeded"
        assert {s["status"] for s in view["steps"].values()} == {"succeeded"}
    events = engine.http.get(f"{engine.url}/v1/executions/{ids[0]}/events").json()["items"]
    types = [e["type"] for e in events]
    assert (types[0], types[-1]) == ("execution.requested", "execution.succeeded")
    log = (engine.data_dir / "logs" / "projector.log").read_text(errors="replace")
    assert "reading what it may have missed from the store" in log


def test_an_existing_streams_limits_follow_the_settings_at_the_next_start(own_engine: Any) -> None:
    from tests.e2e.conftest import stop_engine

    engine: Engine = own_engine({"BATON_STREAM_MAX_AGE": "600"})
    assert stream_info(engine).config.max_age == 600.0
    stop_engine(engine)  # and no service was refused anything by the bus (busauth.GRANTS)
    again: Engine = own_engine({"BATON_STREAM_MAX_AGE": "3600"}, engine.data_dir)
    # The executor sets it as it starts; the other services only look (the bus would refuse
    # them, and stopping the engine checks that it refused nobody).
    wait_until(lambda: stream_info(again).config.max_age == 3600.0, 30, "the new age limit")
    assert stream_info(again).config.duplicate_window == 600.0
