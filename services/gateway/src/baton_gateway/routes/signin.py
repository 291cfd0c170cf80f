"""One-time sign-in codes for the dashboard: what ``baton up`` and ``baton dashboard`` print as
``/?code=…``, so a link (in a terminal, a shell history, a proxy's log) never carries a key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from baton_gateway.domain import Forbidden, Principal
from baton_gateway.routes.deps import SESSION_COOKIE, bearer, caller, services_of
from baton_gateway.services import Services
from baton_gateway.sessions import CODE_TTL

router = APIRouter(tags=["sessions"])


@router.post("/v1/signin-codes", status_code=201)
async def new_signin_code(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    s: Services = Depends(services_of),
) -> dict[str, Any]:
    """A code that signs the dashboard in as the calling key, once, within 10 minutes:
    open ``/?code=<code>``. Made with an API key only (a dashboard session cannot renew itself
    this way)."""
    if credentials is None and SESSION_COOKIE in request.cookies:
        raise Forbidden("a sign-in code is made with an API key: send Authorization: Bearer <key>")
    who: Principal = await caller(request, credentials)  # no key: 401, as everywhere
    reference = s.access.reference(who)
    code, expires_at = await s.sessions.new_code(reference)
    return {
        "code": code,
        "path": f"/?code={code}",
        "expires_at": expires_at.isoformat(),
        "expires_in": int(CODE_TTL.total_seconds()),
    }
