"""Calls to the services that own what a route changes (hitl, scheduler, webhook, calendar),
over NATS request/reply: the owner commits before it answers, so the caller hears the outcome."""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

from baton_common.sealing import redact
from baton_common.telemetry import current_traceparent
from fastapi import HTTPException
from fastapi.responses import JSONResponse, Response
from nats.errors import MaxPayloadError, NoRespondersError
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
        tp = current_traceparent()  # the owner's span joins this request's trace
        msg = await s.bus.request(
            subject,
            request.model_dump_json().encode(),
            timeout_s,
            headers={"traceparent": tp} if tp else None,
        )
    except MaxPayloadError:
        raise HTTPException(
            413, f"the call to {service} is larger than the bus accepts; nothing was changed"
        ) from None
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


class ServiceReply(Protocol):
    status: int
    detail: str
    body: Any


def as_response(reply: ServiceReply, ok: int) -> Response:
    """The owning service's answer as the route's: its error, nothing (204), or its body."""
    if reply.status >= 400:
        raise HTTPException(reply.status, reply.detail)
    if reply.status == 204:
        return Response(status_code=204)
    # a secret tool input in a stored plan (sealed, secretinputs) shows as ***
    return JSONResponse(redact(reply.body), reply.status if reply.status != 200 else ok)
