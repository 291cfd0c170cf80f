"""The agent API for tools written in Python: send a typed message, or ask and wait for the
answer, from inside a tool call (``ctx.agents``).

A message is posted as ``execution.agent_message_posted``; the executor records it as
``execution.agent_message_sent`` (durable, in the replay) and hands it to a waiting
``agent.receive`` step of the plan. Message ids come from the tool call's idempotency key and a
counter, so a tool call that is run again after a crash posts the same messages, once.
``request`` reads the answer from the stream from the moment this attempt was dispatched: a
worker that died while waiting finds an answer that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.contracts import registry
from baton_common.events import EventDecodeError
from nats.js import api

from baton_executor.tools.base import ToolError


class AgentAPI:
    """Messages from one tool call, as agent ``sender`` of its execution's plan."""

    def __init__(self, bus: Bus, task: c.StepDispatched) -> None:
        self.bus = bus
        self.task = task
        self.sent = 0

    async def send(
        self,
        sender: str,
        to: str,
        message_type: str,
        payload: Any = None,
        in_reply_to: str | None = None,
    ) -> str:
        """Post a message; returns its id (the same id when the call runs again). A message to
        (or from) a name that is not one of the plan's agents fails at once: no step could ever
        receive it."""
        self._check_agent("sender", sender)
        self._check_agent("to", to)
        if message_type not in c.MESSAGE_TYPES and not message_type.isupper():
            raise ToolError(
                f"message type {message_type!r}: use upper case, e.g. INFORM", retryable=False
            )
        self.sent += 1
        message_id = f"{self.task.idempotency_key}:tool-m{self.sent}"
        posted = c.AgentMessagePosted(
            **self.task.caused(),
            event_id=uuid5(NAMESPACE_URL, f"baton:agent-message:{message_id}"),
            aggregate_id=self.task.aggregate_id,
            sender=sender,
            recipient=to,
            message_type=message_type,
            payload=payload,
            in_reply_to=in_reply_to,
            step_id=self.task.step_id,
            message_id=message_id,
        )
        await self.bus.publish([posted])
        return message_id

    def _check_agent(self, field: str, name: str) -> None:
        known = self.task.agents
        if known is None or name in known:
            return  # None: a task dispatched before tasks named the plan's agents
        listed = ", ".join(known) or "none"
        raise ToolError(
            f"ctx.agents: {field}: unknown agent {name!r} (this plan's agents: {listed})",
            retryable=False,
        )

    async def request(
        self, sender: str, to: str, payload: Any = None, timeout_s: float = 60.0
    ) -> dict[str, Any]:
        """Send a REQUEST and wait for the RESPONSE (or ERROR) that answers it."""
        if timeout_s <= 0:
            raise ToolError(f"timeout_s: must be above 0, not {timeout_s}", retryable=False)
        self._check_agent("sender", sender)  # before waiting for an answer that cannot come
        self._check_agent("to", to)
        subject = f"{self.bus.settings.subject_root}.{self.task.workspace_id}.execution.agent_message_sent"
        since = self.task.occurred_at - timedelta(seconds=1)
        sub = await self.bus.js.subscribe(
            subject,
            ordered_consumer=True,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_TIME, opt_start_time=since
            ),
        )
        try:
            message_id = await self.send(sender, to, "REQUEST", payload)
            reply = await asyncio.wait_for(self._answer(sub, message_id), timeout_s)
        except TimeoutError:
            raise ToolError(
                f"agent request: no RESPONSE from {to!r} within {timeout_s:g}s (timeout_s)",
                retryable=False,
            ) from None
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if reply.message_type == "ERROR":
            raise ToolError(
                f"agent request: {to!r} answered ERROR: {reply.payload}", retryable=False
            )
        return {
            "message_id": reply.message_id,
            "from": reply.sender,
            "to": reply.recipient,
            "type": reply.message_type,
            "payload": reply.payload,
            "in_reply_to": reply.in_reply_to,
        }

    async def _answer(self, sub: Any, message_id: str) -> c.AgentMessageSent:
        while True:
            msg = await sub.next_msg(timeout=None)
            try:
                event = registry().decode(msg.data)
            except EventDecodeError:
                continue
            if (
                isinstance(event, c.AgentMessageSent)
                and event.aggregate_id == self.task.aggregate_id
                and event.in_reply_to == message_id
            ):
                return event
