"""Schedules and triggers: aggregates with no I/O. Commands in, events and start requests out.

A schedule keeps a cursor: every tick up to it was fired, skipped, buffered or recorded as
missed, and each of those is an event that moves it. So a tick is handled once by whichever
replica commits first (the store's version check refuses the other), and a restart goes on
from the cursor. Executions are asked for as ``Start`` intents; the application records each
as ``intake.start_requested`` on a run record named by the execution's id, in the same commit.
"""

from baton_scheduler.domain.base import (
    RECENT,
    Automation,
    Invalid,
    NotFound,
    Refused,
    SchedulerError,
    Start,
    iso,
    tick_key,
)
from baton_scheduler.domain.schedule import Schedule, timer_id
from baton_scheduler.domain.trigger import MAX_CHAIN, Trigger, event_context, source_execution

__all__ = [
    "MAX_CHAIN",
    "RECENT",
    "Automation",
    "Invalid",
    "NotFound",
    "Refused",
    "Schedule",
    "SchedulerError",
    "Start",
    "Trigger",
    "event_context",
    "iso",
    "source_execution",
    "tick_key",
    "timer_id",
]
