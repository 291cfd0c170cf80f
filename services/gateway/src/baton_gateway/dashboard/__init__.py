"""The dashboard: server-rendered pages (Jinja2) that a small hand-written script keeps live
from the API's SSE streams. Every control calls the same /v1 API as the CLI; the session is the
API key itself, kept in an HttpOnly, SameSite=Strict cookie."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

from baton_common.events import registry
from baton_common.store import run_sync
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from baton_gateway.domain import GatewayError, Principal
from baton_gateway.routes.deps import SESSION_COOKIE
from baton_gateway.routes.executions import Status

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
static = StaticFiles(directory=HERE / "static")
EVENT_TYPES = sorted(registry().types())
STATUSES = get_args(Status)


async def _session(request: Request) -> Principal | Response:
    """The signed-in key, or the response to send instead: a redirect that sets the cookie
    (``?token=…``, then the clean URL) or one to the sign-in page."""
    access = request.app.state.services.access
    if token := request.query_params.get("token"):
        try:
            await run_sync(access.authenticate, token)
        except GatewayError as exc:
            return _signin_page(request, str(exc), _clean(request), 401)
        response = RedirectResponse(_clean(request), 303)
        _set_cookie(response, token, request)
        return response
    key = request.cookies.get(SESSION_COOKIE)
    if key:
        try:
            principal: Principal = await run_sync(access.authenticate, key)
            return principal
        except GatewayError:
            pass
    return RedirectResponse("/signin?" + urlencode({"next": _clean(request)}), 303)


def _clean(request: Request) -> str:
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return request.url.path + (f"?{urlencode(query)}" if query else "")


def _set_cookie(response: Response, key: str, request: Request) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        key,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=7 * 24 * 3600,
    )


def _page(request: Request, name: str, who: Principal, **context: Any) -> HTMLResponse:
    context = {"who": who, "statuses": STATUSES, "event_types": EVENT_TYPES, **context}
    return templates.TemplateResponse(request, name, context)


def _signin_page(request: Request, error: str | None, next_url: str, status: int) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "signin.html", {"error": error, "next": next_url}, status_code=status
    )


@router.get("/signin")
async def signin_form(request: Request, next: str = "/") -> HTMLResponse:
    return _signin_page(request, None, _local(next), 200)


@router.post("/signin")
async def signin(request: Request, key: str = Form(...), next: str = Form("/")) -> Response:
    try:
        await run_sync(request.app.state.services.access.authenticate, key.strip())
    except GatewayError as exc:
        return _signin_page(request, str(exc), _local(next), 401)
    response = RedirectResponse(_local(next), 303)
    _set_cookie(response, key.strip(), request)
    return response


@router.get("/signout")
async def signout() -> Response:
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
    status = status if status in ("pending", "granted", "rejected", "cancelled") else "pending"
    return await _guarded(request, "approvals.html", status=status, page="approvals")


@router.get("/plans")
async def plans_page(request: Request) -> Response:
    return await _guarded(request, "plans.html", page="plans")


@router.get("/schedules")
async def schedules_page(request: Request) -> Response:
    return await _guarded(request, "schedules.html", page="schedules")


@router.get("/webhooks")
async def webhooks_page(request: Request) -> Response:
    return await _guarded(request, "webhooks.html", page="webhooks")


@router.get("/calendars")
async def calendars_page(request: Request) -> Response:
    return await _guarded(request, "calendars.html", page="calendars")


@router.get("/insights")
async def metrics_page(request: Request) -> Response:
    return await _guarded(request, "metrics.html", page="metrics")
