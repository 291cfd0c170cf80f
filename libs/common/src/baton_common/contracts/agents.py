"""Agents working together inside an execution: the shared context and the agent messenger.

Both are part of the Execution aggregate (the executor owns them), so a write or a message is
recorded in the same commit as the step that made it, and a replay folds them in the same order.
"""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import Field

from baton_common.events import Event

# The message types agents exchange; a plan may use others (the field is a plain string).
MessageType = Literal["REQUEST", "RESPONSE", "INFORM", "ERROR", "HANDOFF"]
MESSAGE_TYPES: tuple[str, ...] = ("REQUEST", "RESPONSE", "INFORM", "ERROR", "HANDOFF")


class ContextPutRequested(Event):
    """A person or system (``PUT /v1/executions/{id}/context/{key}``) asks to write a key of an
    execution's shared context; the executor records it as ``execution.context_written``."""

    TYPE = "execution.context_put_requested"

    key: str
    value: Any = None


class _KeyWritten(Event):
    """A key of a shared context got a new ``value``: its ``version``, and who wrote it."""

    key: str
    value: Any = None
    version: int = Field(ge=1)
    written_by: str


class ContextWritten(_KeyWritten):
    """A key of the execution's shared context got a new value: its version counts the writes
    of that key (1, 2, …); ``written_by`` is the step that wrote it, or ``api:<who>``."""

    TYPE = "execution.context_written"

    step_id: str | None = None


# Where a context key lives: the execution's own memory, or the workspace's (every execution of
# the workspace and the API see it).
ContextScope = Literal["execution", "workspace"]


class WorkspaceContextPutRequested(Event):
    """A person or system (``PUT`` / ``DELETE /v1/context/{key}``) asks to write or delete a key
    of the workspace's shared context; the executor records it as ``context.written`` or
    ``context.deleted``. An aggregate of its own (a new id per request)."""

    TYPE = "context.put_requested"

    key: str
    value: Any = None
    delete: bool = False


class WorkspaceContextWritten(_KeyWritten):
    """A key of the workspace's shared context got a new value. Its aggregate is the key (one
    per workspace and key), so ``version`` is the aggregate's version: every write and delete
    of the key counts. ``execution_id`` / ``step_id``: the step that wrote it (None: the API),
    so the write shows in that execution's history."""

    TYPE = "context.written"

    execution_id: UUID | None = None
    step_id: str | None = None


class WorkspaceContextDeleted(Event):
    """A key of the workspace's shared context was deleted (through the API): reads see no
    value until it is written again, with the next version."""

    TYPE = "context.deleted"

    key: str
    version: int = Field(ge=1)
    written_by: str
    execution_id: UUID | None = None


class _AgentMessage(Event):
    """A typed message from one agent to another (``step_id``: the step that sends it);
    ``in_reply_to`` ties a RESPONSE to its REQUEST."""

    sender: str
    recipient: str
    message_type: str
    payload: Any = None
    in_reply_to: str | None = None
    step_id: str | None = None


class AgentMessageSent(_AgentMessage):
    """One agent sent another a typed message (durable: it waits until a step receives it).
    ``seq`` orders the execution's messages."""

    TYPE = "execution.agent_message_sent"

    message_id: str
    seq: int = Field(ge=1)


class AgentMessageDelivered(Event):
    """A waiting step (``agent.receive`` or ``agent.request``) took the message: once only."""

    TYPE = "execution.agent_message_delivered"

    message_id: str
    step_id: str


class AgentMessagePosted(_AgentMessage):
    """A tool written in Python (through the agent API) asks to send a message; the executor
    records it as ``execution.agent_message_sent``. Its event id is derived from the tool
    call's idempotency key and a counter, so a retried call posts the same message once."""

    TYPE = "execution.agent_message_posted"

    message_id: str


class CacheClearRequested(Event):
    """Forget cached results of read-only tools (all of them, or one ``tool``'s)."""

    TYPE = "cache.clear_requested"

    tool: str | None = None
