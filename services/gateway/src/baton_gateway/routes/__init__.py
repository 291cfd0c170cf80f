"""One router per domain, included by ``create_app``."""

from __future__ import annotations

from baton_gateway.routes import (
    approvals,
    audit,
    calendars,
    compat,
    context,
    deadletters,
    executions,
    health,
    insights,
    live,
    logs,
    mcp_servers,
    plans,
    saved,
    schedules,
    signin,
    tools,
    triggers,
    webhooks,
    workspaces,
)

ROUTERS = [
    health.router,
    executions.router,
    plans.router,
    saved.router,
    workspaces.router,
    audit.router,
    deadletters.router,
    live.router,
    compat.router,
    approvals.router,
    schedules.router,
    triggers.router,
    webhooks.router,
    calendars.router,
    logs.router,
    context.router,
    insights.router,
    tools.router,
    mcp_servers.router,
    signin.router,
]
