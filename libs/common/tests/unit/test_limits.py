"""Size limits: the messages that name a field, the body-limit middleware, the store's last check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from baton_common import contracts as c
from baton_common.bodylimit import BodyLimit
from baton_common.bus import Bus
from baton_common.events import Event
from baton_common.limits import KiB, Limits, MiB, TooLarge, check_size, human, limits
from baton_common.settings import Settings
from baton_common.store import MAX_EVENT_BYTES, Commit, EventTooLarge, MemoryEventStore
from baton_common.testing import parked_notice
from baton_common.views import fold
from fastapi import FastAPI
from nats.errors import MaxPayloadError
from pydantic import BaseModel


class Noted(Event):
    """Test-only event carrying a blob."""

    TYPE = "test.noted"
    blob: str = ""


def test_sizes_read_as_people_write_them() -> None:
    assert human(256 * KiB) == "256 KiB"
    assert human(1_258_291) == "1.2 MiB"
    assert human(3 * MiB) == "3 MiB"
    assert human(900) == "900 bytes"


def test_a_value_over_its_limit_names_the_field_its_size_and_the_limit() -> None:
    assert check_size("inputs", {"a": "x" * 100}, 256 * KiB) == len('{"a":"' + "x" * 100 + '"}')
    with pytest.raises(TooLarge) as caught:
        check_size("inputs", {"blob": "x" * 1_258_291}, 256 * KiB)
    assert str(caught.value) == "inputs is 1.2 MiB, the limit is 256 KiB"
    assert caught.value.field == "inputs"
    with pytest.raises(TooLarge, match=r"^plan is 2,049 bytes, the limit is 2,048 bytes$"):
        check_size("plan", "x" * 2047, 2 * KiB)  # just over: exact numbers, not "2 KiB" twice


def test_the_defaults_keep_every_field_under_one_event_and_the_event_under_the_bus() -> None:
    d = Limits()
    assert d.event < 1 * MiB  # NATS's default max_payload, with room for subject and headers
    assert max(d.inputs, d.plan, d.step_output, d.context_value) < d.event
    assert d.request == 2 * MiB


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_MAX_INPUTS_BYTES", "1000")
    assert Limits().inputs == 1000
    assert limits().inputs == 256 * KiB  # the process's copy was read once, before


def test_the_store_refuses_an_event_larger_than_the_bus_takes_and_stores_nothing() -> None:
    store = MemoryEventStore()
    small = Noted(aggregate_id=uuid4(), aggregate_version=1, blob="ok")
    big = Noted(aggregate_id=uuid4(), aggregate_version=1, blob="x" * MAX_EVENT_BYTES)
    with pytest.raises(EventTooLarge) as caught:
        store.commit(Commit(events=[small, big]))
    assert "test.noted" in str(caught.value) and "BATON_MAX_EVENT_BYTES" in str(caught.value)
    assert store.raw_notifications(0, 10) == []  # not even the small one of the same commit
    assert len(store.commit(Commit(events=[small]))) == 1


class Body(BaseModel):
    blob: str


def _app(limit: int) -> Any:
    app = FastAPI()

    @app.post("/echo")
    async def echo(body: Body) -> dict[str, int]:
        return {"size": len(body.blob)}

    @app.post("/early")
    async def early() -> dict[str, str]:
        return {"answered": "without reading"}

    return BodyLimit(app, limit)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(1000))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


async def test_a_body_under_the_limit_passes(http: httpx.AsyncClient) -> None:
    answer = await http.post("/echo", json={"blob": "x" * 500})
    assert answer.status_code == 200 and answer.json() == {"size": 500}


async def test_a_declared_length_over_the_limit_is_refused_before_reading(
    http: httpx.AsyncClient,
) -> None:
    answer = await http.post("/echo", json={"blob": "x" * 5000})
    assert answer.status_code == 413
    assert answer.json()["detail"] == "the request body is 4.9 KiB, the limit is 1000 bytes"


async def test_a_chunked_body_is_counted_and_refused_once_over(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"blob": "'
        for _ in range(100):  # 10,000 bytes in all, without a Content-Length
            yield b"x" * 100
        yield b'"}'

    answer = await http.post(
        "/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert answer.status_code == 413  # not FastAPI's 400 for a body it could not read
    assert "the limit is 1000 bytes" in answer.json()["detail"]


async def test_a_route_that_answers_without_reading_keeps_its_answer(
    http: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(30):
            yield b"x" * 100

    answer = await http.post("/early", content=chunks())
    assert answer.status_code == 200 and answer.json() == {"answered": "without reading"}


def _notice(execution_id: UUID) -> c.EventParked:
    return parked_notice(
        execution_id, "execution.step_succeeded", 200_000, "too large", "executor->BATON_EVENTS"
    )


def test_a_view_whose_event_was_parked_ends_failed_with_the_reason() -> None:
    eid = uuid4()
    started = c.ExecutionStarted(aggregate_id=eid, aggregate_version=1, plan={"steps": []})
    view = fold([started, _notice(eid)])
    assert view is not None and view["status"] == "failed"
    assert view["error"] == "an event of this execution was parked: too large"
    done = c.ExecutionSucceeded(aggregate_id=eid, aggregate_version=2, outputs={})
    ended = fold([started, done, _notice(eid)])
    assert ended is not None and ended["status"] == "succeeded"  # an ending reached is kept


class _Connection:
    """Just what ``Bus`` reads of a nats-py client here."""

    max_payload = 64 * KiB

    def jetstream(self, timeout: float) -> None:
        return None


def test_the_bus_counts_headers_against_the_server_s_max_payload() -> None:
    bus = Bus(_Connection(), Settings())  # type: ignore[arg-type]
    headers = {"Nats-Msg-Id": str(uuid4()), "Baton-Type": "test.noted"}
    bus.check_fits(b"x" * (64 * KiB - 4096), headers)  # room for any headers
    bus.check_fits(b"x" * (64 * KiB - 100), headers)  # these ones fit, counted
    with pytest.raises(MaxPayloadError):  # nats-py would let it go: the server would not
        bus.check_fits(b"x" * (64 * KiB - 10), headers)
