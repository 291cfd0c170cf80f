"""What routes depend on: the services, and the caller (authenticated by key, with a role)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from baton_common.store import run_sync
from baton_common.workspaces import WorkspacePolicy
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from baton_gateway.domain import Forbidden, GatewayError, Principal, Unauthorized
from baton_gateway.services import Services

bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer bk_…`")


async def services_of(request: Request) -> Services:
    """A coroutine, not a plain function: FastAPI runs a plain dependency in a worker thread,
    a hop per request for an attribute read."""
    return _services(request)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


SESSION_COOKIE = "baton_session"
CSRF_HEADER = "x-baton-csrf"
RECHECK_S = 2.0  # an open stream asks again this often whether its key still works


async def caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    """The key's workspace and role; the workspace is never taken from anything else.

    The dashboard's session cookie (HttpOnly, SameSite=Strict) names a server-side session of a
    key; a change made with it must also send ``X-Baton-CSRF``, which a page of another site
    cannot set."""
    key = credentials.credentials if credentials else None
    if key is None and (cookie := request.cookies.get(SESSION_COOKIE)):
        if request.method not in ("GET", "HEAD") and CSRF_HEADER not in request.headers:
            raise Forbidden(
                f"a change made with a dashboard session needs the {CSRF_HEADER} header"
            )
        return await session_principal(request, cookie)
    access = _services(request).access
    known = access.known(key)  # a key seen just before: no store read, no thread hop
    if known is not None:
        return known
    address = request.client.host if request.client else None
    principal: Principal = await run_sync(access.authenticate, key, None, address)
    return principal


async def session_principal(request: Request, session_id: str) -> Principal:
    """The principal of a dashboard session, if the session and its key are both still live."""
    s = _services(request)
    reference = await s.sessions.lookup(session_id)
    if reference is None:
        raise Unauthorized("the dashboard session ended or expired: sign in again")
    principal: Principal = await run_sync(s.access.principal_for, reference)
    return principal


async def still_allowed(request: Request) -> bool:
    """For a stream's loop: False once the client left or its key (or session) stopped working
    (revoked, expired, signed out). The key is asked again every ``RECHECK_S``."""
    if await request.is_disconnected():
        return False
    now = time.monotonic()
    due = getattr(request.state, "recheck_at", None)
    if due is None or now < due:
        request.state.recheck_at = due or now + RECHECK_S
        return True
    request.state.recheck_at = now + RECHECK_S
    try:
        await caller(request, await bearer(request))
    except GatewayError:
        return False
    return True


async def policy_of(s: Services, workspace_id: str) -> WorkspacePolicy:
    """The workspace's policy: from memory when remembered, else read off the event loop."""
    known = s.access.known_policy(workspace_id)
    if known is not None:
        return known
    policy: WorkspacePolicy = await run_sync(s.access.policy, workspace_id)
    return policy


def allowed(permission: str, what: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if their role holds ``permission`` (403 naming the roles that
    do, otherwise)."""

    async def check(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Principal:
        # ``caller`` called, not depended on: one level less for FastAPI to solve per request
        who = await caller(request, credentials)
        who.require(permission, what)
        return who

    return check


Reader = Depends(allowed("read", "reading"))
Runner = Depends(allowed("run", "running and steering executions"))
Approver = Depends(allowed("approve", "deciding approvals"))
Auditor = Depends(allowed("audit", "reading the audit trail"))
