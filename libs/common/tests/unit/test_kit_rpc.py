"""The kit's request/reply server, answering in memory: every call gets a typed reply (422 for a
malformed call, a refusal's status, 409 for a lost race, 503 for a failure, 404 for an unknown
verb), a server span that continues the caller's trace, and a count in ``/metrics``; a call not
signed with the installation's control key gets no answer at all, and the reason is logged."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common import perf
from baton_common.bus import Bus
from baton_common.control import signed_headers
from baton_common.errors import ServiceError
from baton_common.kit.rpc import ANY, CallServer, commit_retrying
from baton_common.store import Commit, ConcurrencyConflict, MemoryEventStore
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import BaseModel, ConfigDict

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Call(BaseModel):
    model_config = ConfigDict(extra="forbid")
    op: str
    n: int = 0


class Reply(BaseModel):
    status: int
    detail: str = ""
    body: Any = None


class Gone(Exception):
    """A service's own refusal type: it carries its status."""

    status = 410


async def double(call: Call) -> Reply:
    return Reply(status=200, body=call.n * 2)


async def refuse(call: Call) -> Reply:
    raise ServiceError("not yours", status=403)


async def gone(call: Call) -> Reply:
    raise Gone("it went away")


async def race(call: Call) -> Reply:
    raise ConcurrencyConflict("version 3 exists")


async def crash(call: Call) -> Reply:
    raise RuntimeError("the database is down")


HANDLERS = {"double": double, "refuse": refuse, "gone": gone, "race": race, "crash": crash}


def server(
    handlers: dict[str, Any] | None = None, service: str = "kit", bus: Bus | None = None, **kw: Any
) -> CallServer[Call, Reply]:
    """The kit's server on ``t_rpc.kit`` (``bus``: what it checks a call's signature with)."""
    runtime = SimpleNamespace(relay=None, bus=bus)
    kw.setdefault("refusals", (Gone,))
    return CallServer(
        runtime,  # type: ignore[arg-type]
        service,
        "t_rpc.kit",
        Call,
        Reply,
        handlers or HANDLERS,
        **kw,
    )


async def answer(body: dict[str, Any] | bytes, **kw: Any) -> Reply:
    data = body if isinstance(body, bytes) else Call(**body).model_dump_json().encode()
    return await server().answer(data, **kw)


async def test_a_handler_answers_by_verb() -> None:
    assert await answer({"op": "double", "n": 21}) == Reply(status=200, body=42)


async def test_a_malformed_call_is_a_422_naming_the_field() -> None:
    assert (await answer(b"{not json")).status == 422
    reply = await answer(b'{"op": "double", "n": "many"}')
    assert reply.status == 422 and reply.detail.startswith("malformed call: n: ")
    reply = await answer(b'{"op": "double", "extra": 1}')
    assert reply.status == 422 and "extra" in reply.detail


class Sent(SimpleNamespace):
    """A request as the server's subscription gets it, recording the answer it is given."""

    async def respond(self, data: bytes) -> None:
        self.answers.append(data)


async def test_only_calls_signed_with_the_installations_key_are_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, subject = b"k" * 32, "t_rpc.kit"
    bus = Bus.__new__(Bus)  # what the server asks of it: the installation's control key
    bus.control_key = key
    kit, hitl = server(bus=bus), server(service="hitl", bus=bus, what="decision")
    data = Call(op="double", n=2).model_dump_json().encode()
    cases = {
        "unsigned": None,
        "bad signature": signed_headers(b"o" * 32, subject, data),
        "moved": signed_headers(key, "t_rpc.other", data),
    }
    for headers in cases.values():
        msg = Sent(subject=subject, data=data, headers=headers, reply="_INBOX.1", answers=[])
        await kit.on_request(msg)  # type: ignore[arg-type]
        await hitl.on_request(msg)  # type: ignore[arg-type]
        assert msg.answers == []  # ignored: the caller times out
    logged = [r.getMessage() for r in caplog.records]
    assert "kit call on t_rpc.kit ignored: unsigned" in logged
    assert "kit call on t_rpc.kit ignored: bad signature" in logged
    assert "decision on t_rpc.kit ignored: unsigned" in logged
    signed = signed_headers(key, subject, data, {"traceparent": PARENT})
    msg = Sent(subject=subject, data=data, headers=signed, reply="_INBOX.2", answers=[])
    await kit.on_request(msg)  # type: ignore[arg-type]
    assert [Reply.model_validate_json(a) for a in msg.answers] == [Reply(status=200, body=4)]


async def test_an_unknown_verb_is_a_404_unless_a_handler_takes_any() -> None:
    reply = await answer({"op": "nothing"})
    assert (reply.status, reply.detail) == (404, "no operation 'nothing' in kit")
    catch_all = server({ANY: double})
    reply = await catch_all.answer(Call(op="whatever", n=2).model_dump_json().encode())
    assert (reply.status, reply.body) == (200, 4)


async def test_refusals_keep_their_status_a_lost_race_is_409_a_failure_503() -> None:
    assert (await answer({"op": "refuse"})).model_dump() == {
        "status": 403,
        "detail": "not yours",
        "body": None,
    }
    reply = await answer({"op": "gone"})
    assert (reply.status, reply.detail) == (410, "it went away")
    reply = await answer({"op": "race"})
    assert reply.status == 409 and "changed meanwhile" in reply.detail
    reply = await answer({"op": "crash"})
    assert reply.status == 503 and reply.detail == "kit could not do it (RuntimeError); try again"
    assert "database" not in reply.detail  # the exception's text stays in the log


async def test_each_call_is_counted_by_verb_and_status() -> None:
    def count(verb: str, status: str) -> float:
        value = perf.REGISTRY.get_sample_value(
            "baton_rpc_calls_total", {"service": "kit", "verb": verb, "status": status}
        )
        return value or 0.0

    before = count("double", "200"), count("crash", "503"), count("-", "422")
    await answer({"op": "double"})
    await answer({"op": "crash"})
    await answer(b"[]")
    after = count("double", "200"), count("crash", "503"), count("-", "422")
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]
    assert "baton_rpc_duration_seconds_count" in perf.text()


async def test_a_call_is_a_server_span_continuing_the_callers_trace(
    spans: InMemorySpanExporter,
) -> None:
    await answer({"op": "double"}, headers={"traceparent": PARENT})
    await answer({"op": "crash"})
    first, second = spans.get_finished_spans()
    assert first.name == "kit call" and first.attributes == {"baton.rpc.verb": "double"}
    assert f"{first.context.trace_id:032x}" == PARENT.split("-")[1]
    assert first.parent is not None and f"{first.parent.span_id:016x}" == PARENT.split("-")[2]
    assert second.attributes == {"baton.rpc.verb": "crash"}
    assert second.parent is None  # no caller's trace: a root


class Racing(MemoryEventStore):
    """A store that loses the first ``n`` commits to another replica."""

    def __init__(self, n: int) -> None:
        super().__init__("kit")
        self.losses = n

    def commit(self, commit: Commit) -> list[tuple[int, bytes]]:
        if self.losses:
            self.losses -= 1
            raise ConcurrencyConflict("another replica was first")
        return super().commit(commit)


def _decision() -> tuple[Commit, str]:
    return Commit(
        events=[c.ExecutionCancelled(aggregate_id=uuid4(), aggregate_version=1)]
    ), "decided"


async def test_a_lost_race_decides_again_and_too_many_are_a_503() -> None:
    runtime = SimpleNamespace(relay=None)
    lock = asyncio.Lock()
    decided = await commit_retrying(runtime, Racing(2), lock, _decision)  # type: ignore[arg-type]
    assert decided == "decided"
    with pytest.raises(ServiceError) as refused:
        await commit_retrying(runtime, Racing(5), lock, _decision)  # type: ignore[arg-type]
    assert refused.value.status == 503


async def test_what_a_call_commits_joins_the_callers_trace(spans: InMemorySpanExporter) -> None:
    store = MemoryEventStore("kit")
    runtime = SimpleNamespace(relay=None)

    async def cancel(call: Call) -> Reply:
        await commit_retrying(runtime, store, asyncio.Lock(), _decision, trace="cancel")  # type: ignore[arg-type]
        return Reply(status=202)

    kit = server({"cancel": cancel})
    reply = await kit.answer(b'{"op": "cancel"}', {"traceparent": PARENT})
    assert reply.status == 202
    [(_, event)] = store.notifications(0, 10)
    assert event.traceparent is not None and event.traceparent.split("-")[1] == PARENT.split("-")[1]
