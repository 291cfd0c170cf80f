"""The execution view's part about agents working together: the shared context (each key's
current value, version and writer; the workspace keys it wrote) and the messages agents
exchanged, with who took each. Folded by ``views.fold`` like every other part, so
``baton replay --at N`` shows them then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from baton_common import contracts as c

View = dict[str, Any]


def _context_written(v: View, e: c.ContextWritten) -> None:
    v.setdefault("context", {})[e.key] = _entry(e)


def _workspace_written(v: View, e: c.WorkspaceContextWritten) -> None:
    """A workspace key this execution wrote (what it read is in the reading step's output)."""
    v.setdefault("workspace_context", {})[e.key] = _entry(e)


def _entry(e: c.ContextWritten | c.WorkspaceContextWritten) -> dict[str, Any]:
    """A key's value as the view shows it: which version, who wrote it, when."""
    return {
        "value": e.value,
        "version": e.version,
        "written_by": e.written_by,
        "at": e.occurred_at.isoformat(),
    }


def _message_sent(v: View, e: c.AgentMessageSent) -> None:
    v.setdefault("messages", []).append(
        {
            "id": e.message_id,
            "seq": e.seq,
            "from": e.sender,
            "to": e.recipient,
            "type": e.message_type,
            "payload": e.payload,
            "in_reply_to": e.in_reply_to,
            "step": e.step_id,
            "delivered_to": None,
            "at": e.occurred_at.isoformat(),
        }
    )


def _message_delivered(v: View, e: c.AgentMessageDelivered) -> None:
    for message in v.get("messages", []):
        if message["id"] == e.message_id:
            message["delivered_to"] = e.step_id


AGENT_VIEW_HANDLERS: dict[type, Callable[[View, Any], None]] = {
    c.ContextWritten: _context_written,
    c.WorkspaceContextWritten: _workspace_written,
    c.AgentMessageSent: _message_sent,
    c.AgentMessageDelivered: _message_delivered,
}
