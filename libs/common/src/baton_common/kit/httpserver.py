"""uvicorn's server for a service's HTTP port, without its ten wake-ups a second.

uvicorn's main loop sleeps 0.1 s at a time to refresh the ``Date`` header (once a second) and
to notice ``should_exit``: an idle gateway or webhook receiver woke ten times a second for that
alone (issue 32). Here the loop wakes once a second, the header's own resolution, and ``exit``
ends it at once.
"""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

TICK_S = 1.0


class QuietServer(uvicorn.Server):
    """A ``uvicorn.Server`` whose main loop ticks once a second; ``exit`` stops it now."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self._exit = asyncio.Event()

    def exit(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # tick 0: the Date header is refreshed each time
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), TICK_S)
