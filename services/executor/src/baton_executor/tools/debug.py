"""``debug.log``: writes lines to the step's live log, to watch logs live and try their limits."""

from __future__ import annotations

import asyncio
from typing import Any

from baton_executor.tools.base import ToolContext
from baton_executor.tools.misc import catalogue_spec


class DebugLog:
    """Writes ``lines`` numbered copies of ``message``, ``interval_s`` apart."""

    spec = catalogue_spec("debug.log")

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Write the lines (the logger bounds them, not this tool), then say how many."""
        count = int(input.get("lines", 1))
        interval = float(input.get("interval_s", 0))
        level = str(input.get("level", "info"))
        for n in range(1, count + 1):
            ctx.log.write(level, "%s (%d/%d)", input["message"], n, count)
            if interval:
                await asyncio.sleep(interval)
            elif n % 1000 == 0:
                await asyncio.sleep(0)  # a flood still lets the worker's other steps run
        return {"written": count}
