"""HTTP API: the app and its error mapping; routes live in ``routes/``, what they share in
``services.py``."""

from __future__ import annotations

from baton_common.bodylimit import BodyLimit
from baton_common.jsontext import UnicodeBodies
from baton_common.limits import TooLarge, limits
from baton_common.plans import PlanInvalid
from baton_common.store import EventTooLarge
from baton_common.telemetry import exporting
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from baton_gateway import dashboard
from baton_gateway.domain import GatewayError
from baton_gateway.openapi import document
from baton_gateway.routes import ROUTERS, mcpdoor
from baton_gateway.services import Services
from baton_gateway.tracing import TraceRequests


def create_app(services: Services, trusted_proxies: str = "") -> FastAPI:
    """``trusted_proxies`` (``BATON_TRUSTED_PROXIES``: addresses or networks, comma separated):
    only requests from these may say, in ``X-Forwarded-Proto`` / ``X-Forwarded-For``, that the
    client came over TLS and from where (cookies are then ``Secure``; throttles count the
    client's address, not the proxy's)."""
    app = FastAPI(
        # FastAPI's own spans (a server span, one per dependency and endpoint) cost ~0.25 ms a
        # request even when no exporter sends them anywhere: only when spans leave the process.
        # No OpenTelemetry meter or logger provider is installed (metrics are Prometheus text):
        # saying so spares the check per request.
        telemetry={"tracing": exporting(), "metrics": False, "logs": False},
        title="Baton",
        version="0.2.0",
        description="Plan, run and watch durable AI workflows. Every change is an event. "
        "Every /v1 route needs an API key: `Authorization: Bearer <key>`; the key decides the "
        "workspace and the role.",
    )
    app.state.services = services
    _errors(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(dashboard.router)
    mcpdoor.mount(app, services)
    app.mount("/static", dashboard.static, name="static")
    app.add_middleware(TraceRequests)
    if trusted_proxies.strip():
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=trusted_proxies)
    app.add_middleware(UnicodeBodies)
    # Outermost: a body over the installation's limit is refused before anything reads it.
    app.add_middleware(BodyLimit, limit=limits().request)
    app.openapi = lambda: document(app)  # type: ignore[method-assign]
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {})
            return JSONResponse(
                {"detail": f"malformed JSON: {ctx.get('error', 'cannot parse the body')}"}, 400
            )
        problems = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                "message": e["msg"],
            }
            for e in errors
        ]
        detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        return JSONResponse({"detail": f"invalid request: {detail}", "problems": problems}, 422)

    @app.exception_handler(PlanInvalid)
    async def plan_invalid(_request: Request, exc: PlanInvalid) -> JSONResponse:
        problems = [p.model_dump() for p in exc.problems]
        return JSONResponse({"detail": f"plan invalid: {exc}", "problems": problems}, 422)

    @app.exception_handler(TooLarge)
    async def too_large(_request: Request, exc: TooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "field": exc.field}, 422)

    @app.exception_handler(EventTooLarge)
    async def event_too_large(_request: Request, exc: EventTooLarge) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, 413)

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        headers = dict(getattr(exc, "headers", {}))
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse({"detail": str(exc)}, exc.status, headers=headers or None)
