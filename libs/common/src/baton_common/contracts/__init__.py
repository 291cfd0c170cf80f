"""The typed events services exchange on the bus: the one contract between them.

Names are stable strings (``<domain>.<event>``); the subject of an event is
``<root>.<workspace>.<domain>.<event>``. Past tense for facts, ``*_requested`` for commands that a
service records before another acts on them.

One module per domain; this package is the one import every service uses
(``from baton_common import contracts as c``): importing it registers every event.
"""

from __future__ import annotations

from typing import Any

from baton_common.contracts.agents import *  # noqa: F403
from baton_common.contracts.approvals import *  # noqa: F403
from baton_common.contracts.calendars import *  # noqa: F403
from baton_common.contracts.calls import *  # noqa: F403
from baton_common.contracts.execution import *  # noqa: F403
from baton_common.contracts.execution import Json as Json
from baton_common.contracts.learning import *  # noqa: F403
from baton_common.contracts.logs import *  # noqa: F403
from baton_common.contracts.mcp import *  # noqa: F403
from baton_common.contracts.plans import *  # noqa: F403
from baton_common.contracts.relay import *  # noqa: F403
from baton_common.contracts.schedules import *  # noqa: F403
from baton_common.contracts.tools import *  # noqa: F403
from baton_common.contracts.webhooks import *  # noqa: F403
from baton_common.contracts.workspaces import *  # noqa: F403
from baton_common.events import _REGISTRY, Event, EventRegistry

# --- upcasters: one function per version step, applied on every read ------------------------------


def _register_upcasters() -> None:
    @_REGISTRY.upcaster("execution.requested", 1)
    def upcast_v1_v2(data: dict[str, Any]) -> dict[str, Any]:
        # v1 called the natural-language request ``prompt`` and the inputs ``params``.
        data["request"] = data.pop("prompt", None)
        data["inputs"] = data.pop("params", None) or {}
        return data


_register_upcasters()


def registry() -> EventRegistry:
    """The process-wide registry, every event of this package in it (importing it did that)."""
    return _REGISTRY


def decode(raw: bytes | str | dict[str, Any], type_hint: str | None = None) -> Event:
    """An event from its JSON (or dict), upcast to the current version; ``EventDecodeError``
    says why it cannot be read."""
    return _REGISTRY.decode(raw, type_hint)
