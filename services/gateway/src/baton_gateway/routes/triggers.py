"""Triggers: an event filter and what to start; the same routes as schedules (forwarded to
the scheduler), under ``/v1/triggers``."""

from __future__ import annotations

from baton_gateway.routes.schedules import TRIGGER_EXAMPLE, routes

router = routes("trigger", TRIGGER_EXAMPLE)
