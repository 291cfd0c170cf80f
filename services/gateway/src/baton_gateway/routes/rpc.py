"""Calls to the services that own what a route changes (hitl, scheduler, webhook, calendar),
over NATS request/reply: the owner commits before it answers, so the caller hears the outcome."""

from __future__ import annotations

from typing import TypeVar

from fastapi import HTTPException
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel

from baton_gateway.api import Services

RPC_TIMEOUT_S = 10.0
Reply = TypeVar("Reply", bound=BaseModel)


async def ask(
    s: Services,
    subject: str,
    request: BaseModel,
    reply: type[Reply],
    service: str,
    timeout_s: float = RPC_TIMEOUT_S,
) -> Reply:
    """One call, answered by whichever replica of ``service`` takes it; 503 when none answers,
    saying whether anything may have been recorded."""
    try:
        msg = await s.bus.nc.request(subject, request.model_dump_json().encode(), timeout_s)
    except NoRespondersError:
        raise HTTPException(
            503, f"{service} is not running; nothing was changed, try again"
        ) from None
    except (NatsTimeout, TimeoutError):
        raise HTTPException(
            503,
            f"{service} did not answer in time: the change may or may not be recorded; "
            "read it before trying again",
        ) from None
    return reply.model_validate_json(msg.data)
