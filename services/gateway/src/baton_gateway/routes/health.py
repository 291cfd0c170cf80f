"""Liveness, readiness and Prometheus metrics (no key needed: probes and scrapers call them)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from baton_gateway.services import Services

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    ok = await services.reader.ready() and (services.ready() if services.ready else True)
    return JSONResponse({"status": "ready" if ok else "not ready"}, 200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> str:
    services: Services = request.app.state.services
    extra = services.metrics() if services.metrics else ""
    return (
        f"baton_intake_commits_total {services.intake.commits}\n"
        f"baton_access_commits_total {services.access.commits}\n{extra}"
    )
