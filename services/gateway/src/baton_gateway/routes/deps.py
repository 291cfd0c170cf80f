"""What routes depend on: the services, and the caller (authenticated by key, with a role)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from baton_common.store import run_sync
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from baton_gateway.api import Services
from baton_gateway.domain import Forbidden, Principal

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer bk_…`")


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


SESSION_COOKIE = "baton_session"
CSRF_HEADER = "x-baton-csrf"


async def caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """The key's workspace and role; the workspace is never taken from anything else.

    The dashboard's session cookie (HttpOnly, SameSite=Strict) carries a key too; a change made
    with it must also send ``X-Baton-CSRF``, which a page of another site cannot set."""
    key = credentials.credentials if credentials else None
    if key is None and (cookie := request.cookies.get(SESSION_COOKIE)):
        if request.method not in ("GET", "HEAD") and CSRF_HEADER not in request.headers:
            raise Forbidden(
                f"a change made with a dashboard session needs the {CSRF_HEADER} header"
            )
        key = cookie
    principal: Principal = await run_sync(services_of(request).access.authenticate, key)
    return principal


def allowed(permission: str, what: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if their role holds ``permission`` (403 naming the roles that
    do, otherwise)."""

    async def check(who: Principal = Depends(caller)) -> Principal:
        who.require(permission, what)
        return who

    return check


Reader = Depends(allowed("read", "reading"))
Runner = Depends(allowed("run", "running and steering executions"))
Auditor = Depends(allowed("audit", "reading the audit trail"))
