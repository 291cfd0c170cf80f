"""What the routes share: the applications, readers and connections ``main.py`` builds (tests
build their own), handed to each route as a dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from baton_common.archived import Archives
from baton_common.sealing import Sealer

from baton_gateway.access import AccessApp
from baton_gateway.application import IntakeApp
from baton_gateway.reads import ViewReader
from baton_gateway.sessions import MemorySessions, Sessions


@dataclass
class Services:
    """What the routes need; built by main.py, replaced in tests."""

    intake: IntakeApp
    reader: ViewReader
    access: AccessApp
    bus: Any = None
    ready: Any = None
    metrics: Any = None
    sessions: Sessions = field(default_factory=MemorySessions)
    sealer: Sealer = field(default_factory=Sealer.in_memory)  # secret tool inputs (vetting.py)
    archives: Archives | None = None  # expired executions' histories (retention.py)
