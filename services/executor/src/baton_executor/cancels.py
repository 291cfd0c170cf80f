"""A worker hears that an execution is being cancelled (``execution.cancelling``), so a call in
hand that can stop (an MCP tool's: ``notifications/cancelled`` to its server) stops at once
instead of running to its end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any
from uuid import UUID

from baton_common import contracts as c
from baton_common.bus import Bus
from baton_common.events import EventDecodeError

log = logging.getLogger(__name__)


class Cancels:
    """One core subscription; a flag per execution that has calls running here."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.flags: dict[UUID, tuple[asyncio.Event, int]] = {}

    async def start(self) -> None:
        subject = f"{self.bus.settings.subject_root}.*.{c.ExecutionCancelling.TYPE}"
        try:
            await self.bus.nc.subscribe(subject, cb=self._on_msg)
        except Exception as exc:  # calls still run; they just are not stopped early
            log.warning("not following cancellations: %s", exc)

    async def _on_msg(self, msg: Any) -> None:
        try:
            event = c.decode(msg.data)
        except EventDecodeError:
            return
        held = self.flags.get(event.aggregate_id)
        if held is not None:
            held[0].set()

    @contextlib.contextmanager
    def watching(self, task: c.StepDispatched) -> Iterator[asyncio.Event]:
        """The flag of the task's execution while its call runs."""
        key = task.aggregate_id
        flag, users = self.flags.get(key, (asyncio.Event(), 0))
        self.flags[key] = (flag, users + 1)
        try:
            yield flag
        finally:
            flag, users = self.flags[key]
            if users <= 1:
                del self.flags[key]
            else:
                self.flags[key] = (flag, users - 1)
