"""The dashboard: server-rendered pages (Jinja2) that a small hand-written script keeps live
from the API's SSE streams. Every control calls the same /v1 API as the CLI.

Sign-in opens a server-side session (``sessions.py``): the HttpOnly, SameSite=Strict cookie holds
only its random id, never the key. Two ways in: a one-time code in the link (``/?code=…``,
printed by ``baton up`` and ``baton dashboard``), or a key pasted into ``/signin``, whose form
carries a CSRF token bound to a pre-session cookie, so another site cannot sign a visitor in as
its own key."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

from baton_common.contracts import registry
from baton_common.store import run_sync
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from baton_gateway.domain import GatewayError, Principal
from baton_gateway.routes.deps import SESSION_COOKIE, session_principal
from baton_gateway.routes.executions import Status
from baton_gateway.sessions import SESSION_TTL

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=HERE / "static")
EVENT_TYPES = sorted(registry().types())
STATUSES = get_args(Status)
CSRF_COOKIE = "baton_signin_csrf"
TOKEN_GONE = (
    "sign-in links with ?token= are no longer accepted (they carried the key): "
    "run `baton dashboard` for a one-time link, or paste a key below"
)


async def _session(request: Request) -> Principal | Response:
    """The signed-in principal, or the response to send instead: a redirect that opens a
    session (``?code=…``, then the clean URL) or one to the sign-in page."""
    if "token" in request.query_params:
        return _signin_page(request, TOKEN_GONE, _clean(request), 401)
    if code := request.query_params.get("code"):
        return await _redeem(request, code)
    if session_id := request.cookies.get(SESSION_COOKIE):
        try:
            return await session_principal(request, session_id)
        except GatewayError:
            pass
    return RedirectResponse("/signin?" + urlencode({"next": _clean(request)}), 303)


async def _redeem(request: Request, code: str) -> Response:
    sessions = request.app.state.services.sessions
    reference = await sessions.redeem(code)
    if reference is None:
        error = "this sign-in link was used already or has expired: ask for a new one"
        return _signin_page(request, error, _clean(request), 401)
    return await _signed_in(request, reference, _clean(request))


async def _signed_in(request: Request, reference: str, next_url: str) -> Response:
    """A new session for ``reference``; the cookie names it. A session the browser held
    before is ended (a fixed session id cannot be planted ahead of the sign-in)."""
    sessions = request.app.state.services.sessions
    if old := request.cookies.get(SESSION_COOKIE):
        await sessions.end(old)
    session_id, _ = await sessions.new_session(reference)
    response = RedirectResponse(next_url, 303)
    _set_cookie(response, SESSION_COOKIE, session_id, request, int(SESSION_TTL.total_seconds()))
    response.delete_cookie(CSRF_COOKIE, path="/signin")
    return response


def _clean(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("token", "code")]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def _set_cookie(response: Response, name: str, value: str, request: Request, age: int) -> None:
    """HttpOnly, SameSite=Strict; ``Secure`` when the request came over TLS (directly, or
    through a proxy of ``BATON_TRUSTED_PROXIES`` that says so)."""
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=age,
        path="/signin" if name == CSRF_COOKIE else "/",
    )


def _page(request: Request, name: str, who: Principal, **context: Any) -> HTMLResponse:
    context = {"who": who, "statuses": STATUSES, "event_types": EVENT_TYPES, **context}
    return templates.TemplateResponse(request, name, context)


def _signin_page(request: Request, error: str | None, next_url: str, status: int) -> HTMLResponse:
    """The paste-a-key form with a fresh CSRF token, set in a pre-session cookie too."""
    token = secrets.token_urlsafe(32)
    response = templates.TemplateResponse(
        request,
        "signin.html",
        {"error": error, "next": _local(next_url), "csrf": token},
        status_code=status,
    )
    _set_cookie(response, CSRF_COOKIE, token, request, 3600)
    return response


@router.get("/signin")
async def signin_form(request: Request, next: str = "/") -> HTMLResponse:
    return _signin_page(request, None, next, 200)


@router.post("/signin")
async def signin(
    request: Request, key: str = Form(...), next: str = Form("/"), csrf: str = Form("")
) -> Response:
    """The form's token must match its cookie: a page of another site can post this form but
    can neither read nor send that cookie (SameSite=Strict)."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    if not (csrf and expected and secrets.compare_digest(csrf, expected)):
        error = "the sign-in form expired or came from another site: sign in again here"
        return _signin_page(request, error, next, 403)
    access = request.app.state.services.access
    address = request.client.host if request.client else None
    try:
        who = await run_sync(access.authenticate, key.strip(), None, address)
    except GatewayError as exc:
        page = _signin_page(request, str(exc), next, exc.status)
        page.headers.update(getattr(exc, "headers", {}))
        return page
    return await _signed_in(request, access.reference(who), _local(next))


@router.get("/signout")
async def signout(request: Request) -> Response:
    if session_id := request.cookies.get(SESSION_COOKIE):
        await request.app.state.services.sessions.end(session_id)
    response = RedirectResponse("/signin", 303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def _local(url: str) -> str:
    """Only a path of this site: never a redirect elsewhere."""
    return url if url.startswith("/") and not url.startswith("//") else "/"


async def _guarded(request: Request, name: str, **context: Any) -> Response:
    """The page for a signed-in key; the sign-in (or cookie-setting) redirect otherwise."""
    who = await _session(request)
    return who if isinstance(who, Response) else _page(request, name, who, **context)


@router.get("/")
async def executions_page(request: Request) -> Response:
    names = ("status", "plan", "q", "since", "until", "before")
    filters = {k: request.query_params.get(k, "") for k in names}
    # The list follows the stream from before it loads its first page: nothing falls between.
    after = await request.app.state.services.reader.last_seq()
    return await _guarded(
        request, "executions.html", filters=filters, page="executions", after=after
    )


@router.get("/executions/{execution_id}")
async def execution_page(request: Request, execution_id: str) -> Response:
    return await _guarded(request, "execution.html", execution_id=execution_id, page="execution")


@router.get("/executions/{execution_id}/replay")
async def replay_page(request: Request, execution_id: str) -> Response:
    return await _guarded(request, "replay.html", execution_id=execution_id, page="replay")


@router.get("/approvals")
async def approvals_page(request: Request, status: str = "pending") -> Response:
    status = (
        status
        if status in ("pending", "granted", "rejected", "cancelled", "answered")
        else "pending"
    )
    # The inbox follows the stream from before it reads its gates, like the executions list.
    after = await request.app.state.services.reader.last_seq()
    return await _guarded(request, "approvals.html", status=status, page="approvals", after=after)


def _static_page(path: str, page: str) -> None:
    """A page whose template loads all it shows itself: ``page`` names its template and tab."""

    async def show(request: Request) -> Response:
        return await _guarded(request, f"{page}.html", page=page)

    router.add_api_route(path, show, methods=["GET"], name=f"{page}_page")


for tab in ("plans", "schedules", "webhooks", "calendars", "agents"):
    _static_page(f"/{tab}", tab)
_static_page("/insights", "metrics")
