"""Callables for agent files (``implementation: {python: ...}``)."""

import os
from typing import Any


def whoami(input: dict[str, Any]) -> dict[str, Any]:
    """Which worker process answered."""
    return {"pid": os.getpid(), "said": input.get("text", "")}


def fails(input: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("this agent always fails")


async def tells(input: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Sends ``input.to`` a message through the agent API, as agent ``input.sender``."""
    sent = await ctx.agents.send(input["sender"], input["to"], "INFORM", {"note": "hello"})
    return {"message_id": sent}
