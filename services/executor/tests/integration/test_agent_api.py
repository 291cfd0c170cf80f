"""The agent API of Python tools against a real NATS JetStream: a request gets its answer from
the stream, also when the answer was recorded before the call ran again (a worker restarted
mid-wait); an unanswered request times out with a clear error."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from baton_common import contracts as c
from baton_common.contracts import registry
from baton_executor.agent_api import AgentAPI
from baton_executor.tools.base import ToolError

# The request asks the server for messages since the task began (a time from this process):
# with this process's clock moved and the server's not, that asks for the future.
pytestmark = [pytest.mark.integration, pytest.mark.real_clock]


def _task() -> c.StepDispatched:
    eid = uuid4()
    return c.StepDispatched(
        aggregate_id=eid, aggregate_version=3, step_id="t", attempt=1, tool="mock.agent",
        input={}, idempotency_key=f"{eid}:t", timeout_s=30,
    )  # fmt: skip


def _reply(task: c.StepDispatched, to: str, kind: str = "RESPONSE") -> c.AgentMessageSent:
    return c.AgentMessageSent(
        aggregate_id=task.aggregate_id, aggregate_version=9, message_id=f"{task.aggregate_id}:m9",
        seq=9, sender="boss", recipient="worker", message_type=kind, payload={"ok": True},
        in_reply_to=to,
    )  # fmt: skip


async def test_a_request_gets_its_answer_from_the_stream(bus: Any, settings: Any) -> None:
    await bus.declare()
    task = _task()
    posted = await bus.nc.subscribe(
        f"{settings.subject_root}.default.execution.agent_message_posted"
    )

    async def answer() -> None:  # what the executor does once a plan step replies
        msg = await posted.next_msg(timeout=10)
        request = registry().decode(msg.data)
        assert isinstance(request, c.AgentMessagePosted) and request.message_type == "REQUEST"
        await bus.publish([_reply(task, request.message_id)])

    answering = asyncio.create_task(answer())
    reply = await AgentAPI(bus, task).request("worker", "boss", {"q": 1}, timeout_s=10)
    await answering
    assert reply["type"] == "RESPONSE" and reply["payload"] == {"ok": True}

    # the same call run again (a new worker after a crash): the answer is already in the stream
    again = await AgentAPI(bus, task).request("worker", "boss", {"q": 1}, timeout_s=10)
    assert again == reply


async def test_an_unanswered_request_or_an_error_reply_fails_clearly(bus: Any) -> None:
    await bus.declare()
    task = _task()
    with pytest.raises(ToolError, match=r"no RESPONSE from 'boss' within 0.5s \(timeout_s\)"):
        await AgentAPI(bus, task).request("worker", "boss", timeout_s=0.5)
    with pytest.raises(ToolError, match="timeout_s: must be above 0"):
        await AgentAPI(bus, task).request("worker", "boss", timeout_s=0)
    await bus.publish([_reply(task, f"{task.idempotency_key}:tool-m1", kind="ERROR")])
    with pytest.raises(ToolError, match="'boss' answered ERROR"):
        await AgentAPI(bus, task).request("worker", "boss", timeout_s=5)
