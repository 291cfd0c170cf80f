"""The agent messenger: agents of one plan exchange typed messages, durably, once, in order.

``agent.send`` records a message (an event: durable, on JetStream, in the replay). A waiting
``agent.receive`` or ``agent.request`` step takes it: each message is delivered to one step
only, oldest first, so two agents' messages arrive in the order they were sent. A wait has a
durable timer; when it fires first, the step fails with a clear error. The executor does all of
it from the execution's state, without a tool worker. No I/O here (the aggregate's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.agents import plan_agents
from baton_common.events import Event
from baton_common.plans import Plan
from baton_common.store import Timer

from baton_executor.context import ContextValueTooLarge, check_value

SEND, REQUEST, RECEIVE = "agent.send", "agent.request", "agent.receive"
AGENT_TOOLS = (SEND, REQUEST, RECEIVE)


@dataclass
class Message:
    """A message as the execution keeps it."""

    message_id: str
    seq: int
    sender: str
    recipient: str
    type: str
    payload: Any
    in_reply_to: str | None
    delivered_to: str | None = None

    def as_output(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "from": self.sender,
            "to": self.recipient,
            "type": self.type,
            "payload": self.payload,
            "in_reply_to": self.in_reply_to,
        }


@dataclass
class Waiter:
    """A step waiting for a message: ``agent.receive`` (any fitting message for ``agent``) or
    ``agent.request`` (the reply to its own request)."""

    tool: str
    attempt: int
    agent: str
    sender: str | None = None
    types: tuple[str, ...] = ()
    request_id: str | None = None

    def takes(self, m: Message, replies_awaited: set[str]) -> bool:
        if m.delivered_to is not None or m.recipient != self.agent:
            return False
        if self.tool == REQUEST:
            return self.request_id is not None and m.in_reply_to == self.request_id
        if m.in_reply_to in replies_awaited:
            return False  # the answer to a pending request goes to the step that asked
        return (self.sender is None or m.sender == self.sender) and (
            not self.types or m.type in self.types
        )


class Messenger:
    """The Execution aggregate's messages and the steps that wait for them."""

    id: UUID
    sid: str  # str(id), formatted once (domain.py)
    plan: Plan | None

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(aggregate_id)  # type: ignore[call-arg]
        self.messages: dict[str, Message] = {}
        self.waiters: dict[str, Waiter] = {}  # step id -> wait, in the order they began
        self._agents: tuple[Plan, list[str]] | None = None

    # --- commands ---------------------------------------------------------------------------------

    def agent_step(
        self, step_id: str, tool: str, tool_input: dict[str, Any], attempt: int, now: datetime
    ) -> None:
        """Run an agent.* step: send now, or begin waiting (and deliver what is already there)."""
        if problem := self._check_names(tool, tool_input):
            self._step_fails(step_id, attempt, f"{tool}: {problem}")
            return
        if tool == SEND:
            try:
                check_value(tool_input.get("payload"), "input.payload")
            except ContextValueTooLarge as exc:
                self._step_fails(step_id, attempt, f"{tool}: {exc}")
                return
            sent = self._send(
                step_id,
                tool_input["from"],
                tool_input["to"],
                tool_input["type"],
                tool_input.get("payload"),
                tool_input.get("in_reply_to"),
            )
            self._step_succeeds(step_id, attempt, {"message_id": sent.message_id, "seq": sent.seq})
            self._deliver_all()
            return
        self._begin_wait(step_id, tool, tool_input, attempt, now)

    def post_message(self, posted: c.AgentMessagePosted) -> None:
        """A message from a tool's agent API; a repeated post (same id) is recorded once."""
        if posted.message_id in self.messages or self.plan is None:
            return
        self._send(
            posted.step_id,
            posted.sender,
            posted.recipient,
            posted.message_type,
            posted.payload,
            posted.in_reply_to,
            message_id=posted.message_id,
        )
        self._deliver_all()

    def message_timed_out(self, payload: dict[str, Any]) -> None:
        step_id, attempt = payload["step_id"], int(payload["attempt"])
        waiter = self.waiters.get(step_id)
        if waiter is None or waiter.attempt != attempt:
            return  # delivered, cancelled or retried meanwhile
        after = float(payload.get("after_s", 0))
        if waiter.tool == REQUEST:
            error = (
                f"agent.request: no RESPONSE from {payload.get('to')!r} to request "
                f"{waiter.request_id} within {after:g}s (timeout_s)"
            )
        else:
            error = f"agent.receive: no message for {waiter.agent!r} within {after:g}s (timeout_s)"
        self._wait_fails(step_id, attempt, error)

    def agent_names(self) -> list[str]:
        """The plan's agents, sorted (worked out once per plan: every task carries them)."""
        if self.plan is None:
            return []
        if self._agents is None or self._agents[0] is not self.plan:
            self._agents = (self.plan, sorted(plan_agents(self.plan)))
        return self._agents[1]

    # --- internals --------------------------------------------------------------------------------

    def _check_names(self, tool: str, tool_input: dict[str, Any]) -> str | None:
        assert self.plan is not None
        known = plan_agents(self.plan)
        fields = ["agent"] if tool == RECEIVE else ["from", "to"]
        for field in fields:
            name = tool_input.get(field)
            if name not in known:
                listed = ", ".join(sorted(known)) or "none"
                return f"input.{field}: unknown agent {name!r} (this plan's agents: {listed})"
        return None

    def _send(
        self,
        step_id: str | None,
        sender: str,
        recipient: str,
        message_type: str,
        payload: Any,
        in_reply_to: str | None,
        message_id: str | None = None,
    ) -> Message:
        seq = len(self.messages) + 1
        mid = message_id or f"{self.sid}:m{seq}"
        self._event(
            c.AgentMessageSent,
            message_id=mid,
            seq=seq,
            sender=sender,
            recipient=recipient,
            message_type=message_type,
            payload=payload,
            in_reply_to=in_reply_to,
            step_id=step_id,
        )
        return self.messages[mid]

    def _begin_wait(
        self, step_id: str, tool: str, tool_input: dict[str, Any], attempt: int, now: datetime
    ) -> None:
        timeout = float(tool_input["timeout_s"])
        self._event(
            c.StepDispatched,
            step_id=step_id,
            attempt=attempt,
            tool=tool,
            input=tool_input,
            idempotency_key=f"{self.sid}:{step_id}",
            timeout_s=timeout,
            variant=self._variant(step_id),
        )
        if tool == REQUEST:
            self._send(
                step_id,
                tool_input["from"],
                tool_input["to"],
                "REQUEST",
                tool_input.get("payload"),
                None,
            )
        self._set_timer(
            Timer(
                f"deadline:{self.sid}:{step_id}:{attempt}",
                now + timedelta(seconds=timeout),
                {
                    "execution_id": self.sid,
                    "kind": "message_timeout",
                    "step_id": step_id,
                    "attempt": attempt,
                    "after_s": timeout,
                    "to": tool_input.get("to"),
                },
            )
        )
        self._deliver_all()

    def _deliver_all(self) -> None:
        """Hand each waiting step the oldest message it takes, until none fits."""
        progress = True
        while progress:
            progress = False
            awaited = {w.request_id for w in self.waiters.values() if w.request_id}
            for step_id, waiter in list(self.waiters.items()):
                found = next(
                    (m for m in self._in_order() if waiter.takes(m, awaited)),
                    None,
                )
                if found is not None:
                    self._deliver(step_id, waiter, found)
                    progress = True
                    break

    def _in_order(self) -> list[Message]:
        return sorted(self.messages.values(), key=lambda m: m.seq)

    def _deliver(self, step_id: str, waiter: Waiter, m: Message) -> None:
        self._event(c.AgentMessageDelivered, message_id=m.message_id, step_id=step_id)
        self._clear_timer(f"deadline:{self.sid}:{step_id}:{waiter.attempt}")
        if waiter.tool == REQUEST and m.type == "ERROR":
            self._wait_fails(
                step_id, waiter.attempt, f"agent.request: {m.sender!r} answered ERROR: {m.payload}"
            )
            return
        self._step_succeeds(step_id, waiter.attempt, m.as_output())

    # --- hooks the aggregate provides -------------------------------------------------------------

    def _event(self, event_class: type[Event], **fields: Any) -> Event:
        raise NotImplementedError

    def _step_succeeds(self, step_id: str, attempt: int, output: Any, **extra: Any) -> None:
        raise NotImplementedError

    def _step_fails(self, step_id: str, attempt: int, error: str) -> None:
        raise NotImplementedError

    def _wait_fails(self, step_id: str, attempt: int, error: str) -> None:
        raise NotImplementedError

    def _variant(self, step_id: str) -> int:
        raise NotImplementedError

    def _set_timer(self, timer: Timer) -> None:
        raise NotImplementedError

    def _clear_timer(self, timer_id: str) -> None:
        raise NotImplementedError

    # --- state from events ------------------------------------------------------------------------

    def track_waits(self, event: Event) -> None:
        """Who waits for what, from the events (called for every event applied)."""
        if isinstance(event, c.StepDispatched):
            if event.kind == "run" and event.tool in (REQUEST, RECEIVE):
                i = event.input
                types = tuple(i.get("types") or ())
                agent = i["from"] if event.tool == REQUEST else i["agent"]
                self.waiters[event.step_id] = Waiter(
                    event.tool,
                    event.attempt,
                    agent,
                    i.get("from") if event.tool == RECEIVE else None,
                    types,
                )
            else:
                self.waiters.pop(event.step_id, None)
        elif isinstance(event, c.AgentMessageSent):
            self.messages[event.message_id] = Message(
                event.message_id,
                event.seq,
                event.sender,
                event.recipient,
                event.message_type,
                event.payload,
                event.in_reply_to,
            )
            waiter = self.waiters.get(event.step_id or "")
            if waiter is not None and waiter.tool == REQUEST and event.message_type == "REQUEST":
                waiter.request_id = event.message_id
        elif isinstance(event, c.AgentMessageDelivered):
            self.messages[event.message_id].delivered_to = event.step_id
        elif isinstance(event, c.StepSucceeded | c.StepFailed | c.StepSkipped | c.StepCancelled):
            if getattr(event, "kind", "run") == "run":
                self.waiters.pop(event.step_id, None)
