"""Calls to the services that own what a route changes (hitl, scheduler, webhook, calendar),
over NATS request/reply: the owner commits before it answers, so the caller hears the outcome."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from baton_common.sealing import redact
from baton_common.telemetry import current_traceparent
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import JSONResponse, Response
from nats.errors import MaxPayloadError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel

from baton_gateway.domain import Principal
from baton_gateway.routes.deps import services_of
from baton_gateway.services import Services

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


@dataclass(frozen=True)
class Forward(Generic[Reply]):
    """How a domain's routes reach the service that owns it: the subject (from the subject
    root), the call and reply types of its ``op``/``workspace_id``/``actor``/``body`` calls."""

    subject: Callable[[str], str]
    call: type[BaseModel]
    reply: type[Reply]
    service: str
    timeout_s: float = RPC_TIMEOUT_S

    async def ask(self, s: Services, who: Principal, op: str, body: dict[str, Any]) -> Reply:
        """The service's reply to ``op`` in the caller's workspace."""
        request = self.call(op=op, workspace_id=who.workspace_id, actor=who.actor, body=body)
        subject = self.subject(s.bus.settings.subject_root)
        return await ask(s, subject, request, self.reply, self.service, self.timeout_s)

    async def __call__(
        self, s: Services, who: Principal, op: str, ok: int, /, **body: Any
    ) -> Response:
        """Forward one call; the service's status and body become the response."""
        return as_response(await self.ask(s, who, op, body), ok)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Forwarding:
    """The routes of ``router`` that only forward: each calls one ``op`` of ``call``'s service
    with its path parameter (sent as ``key``, in text), its body's fields and fixed fields."""

    router: APIRouter
    call: Forward[Any]
    key: str = "id"
    path_type: type = UUID

    def add(
        self,
        route: str,
        op: str,
        name: str,
        who: Any,
        *,
        ok: int = 200,
        body: type[BaseModel] | None = None,
        doc: str | None = None,
        **fixed: Any,
    ) -> None:
        """Add ``route`` ("METHOD /path" below the router's prefix, with at most one
        ``{parameter}``) as ``name``, for the callers ``who`` admits; ``doc`` is its description
        in the OpenAPI document. ``body``'s fields are sent with the fixed ones."""
        method, _, path = route.partition(" ")
        fields = re.findall(r"\{(\w+)\}", path)
        call, key = self.call, self.key

        async def endpoint(**given: Any) -> Response:
            sent = dict(fixed)
            for field in fields:
                sent[key] = str(given[field])
            if body is not None:
                sent |= given["body"].model_dump(exclude_none=True)
            return await call(given["s"], given["who"], op, ok, **sent)

        # What FastAPI reads to validate a request and to describe the route: the same
        # parameters, in the same order, as a route written out by hand.
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = [inspect.Parameter(f, keyword, annotation=self.path_type) for f in fields]
        if body is not None:
            params.append(inspect.Parameter("body", keyword, annotation=body))
        params += [
            inspect.Parameter("who", keyword, default=who, annotation=Principal),
            inspect.Parameter("s", keyword, default=Depends(services_of), annotation=Services),
        ]
        endpoint.__signature__ = inspect.Signature(params, return_annotation=Response)  # type: ignore[attr-defined]
        endpoint.__doc__ = doc
        self.router.add_api_route(path, endpoint, methods=[method], status_code=ok, name=name)


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
