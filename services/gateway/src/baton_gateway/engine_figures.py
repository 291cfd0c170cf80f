"""The engine's own figures for ``GET /v1/metrics/summary`` (``engine``), read from JetStream
when asked: events per second over the last minute, and per durable consumer of the event
stream its lag (messages not yet delivered), the messages delivered and not yet acknowledged,
the redelivered ones and the age of the oldest message it has not acknowledged; then the dead
letters. They are the installation's, not one workspace's (the dead letters also per workspace),
so only a caller who may manage the workspace sees them.

Every figure comes from the server at the moment of the call: nothing here is kept, and a server
that cannot answer one figure leaves that figure out (None), never the summary.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from typing import Any

from baton_common.bus import Bus
from nats.js import api
from pydantic import BaseModel, ConfigDict, Field

WINDOW_S = 60  # throughput: the events of the last minute


class Throughput(BaseModel):
    """Events the event stream took in over the last ``window_s`` seconds (None: unreadable)."""

    window_s: int
    events: int | None
    events_per_s: float | None


class ConsumerFigures(BaseModel):
    """One durable consumer of the event stream."""

    name: str
    pending: int = Field(description="lag: messages on the stream not yet delivered to it")
    ack_pending: int = Field(description="messages delivered and not yet acknowledged")
    redelivered: int = Field(description="messages the server redelivered and still waits on")
    oldest_pending_age_s: float | None = Field(
        description="seconds since the oldest message it has not acknowledged reached the "
        "stream; null when it has none"
    )


class DeadLetters(BaseModel):
    """Messages parked on the dead-letter stream (``baton deadletters``)."""

    total: int | None = Field(description="the installation's")
    workspace: int = Field(description="the caller's workspace's")
    by_consumer: dict[str, int] = Field(description="the workspace's, by consumer")


class EngineFigures(BaseModel):
    """The installation's bus, read from JetStream at the moment of the call."""

    sampled_at: datetime
    stream: dict[str, Any]
    throughput: Throughput
    consumers: list[ConsumerFigures]
    oldest_pending_age_s: float | None = Field(description="the largest of the consumers'")
    dead_letters: DeadLetters


class MetricsSummary(BaseModel):
    """``GET /v1/metrics/summary``: the workspace's figures, and the engine's."""

    model_config = ConfigDict(extra="allow")
    since: str
    finished: int
    success_rate: float | None
    throughput: list[dict[str, Any]]
    by_plan: list[dict[str, Any]]
    by_tool: list[dict[str, Any]]
    totals: dict[str, Any]
    engine: EngineFigures | None = Field(
        description="for a caller who may manage the workspace (owner, admin); else null"
    )


async def engine_figures(bus: Bus, workspace_id: str, now: datetime) -> EngineFigures:
    """Throughput, consumers, the oldest pending age and dead letters, as of ``now``."""
    s = bus.settings
    stream = await bus.js.stream_info(s.stream)
    durable = [c for c in await bus.js.consumers_info(s.stream) if c.config.durable_name]
    consumers = [await _consumer(bus, c, now) for c in durable]
    consumers.sort(key=lambda c: c.name)
    ages = [c.oldest_pending_age_s for c in consumers if c.oldest_pending_age_s is not None]
    return EngineFigures(
        sampled_at=now,
        stream={"name": s.stream, "messages": stream.state.messages},
        throughput=await _throughput(bus, stream.state.last_seq, now),
        consumers=consumers,
        oldest_pending_age_s=max(ages) if ages else None,
        dead_letters=await _dead_letters(bus, workspace_id),
    )


async def _throughput(bus: Bus, last_seq: int, now: datetime) -> Throughput:
    """Events the stream took in the last minute: the first message at or after its start
    (the server finds it by time) up to the last one."""
    since = now - timedelta(seconds=WINDOW_S)
    request = json.dumps({"start_time": since.isoformat()}).encode()
    events: int | None = None
    with contextlib.suppress(Exception):
        reply = await bus.nc.request(f"$JS.API.STREAM.MSG.GET.{bus.settings.stream}", request, 5)
        answer = json.loads(reply.data)
        first = (answer.get("message") or {}).get("seq")
        # no message since then: the server answers 404 "no message found"
        events = last_seq - int(first) + 1 if first else 0
    per_s = round(events / WINDOW_S, 2) if events is not None else None
    return Throughput(window_s=WINDOW_S, events=events, events_per_s=per_s)


async def _consumer(bus: Bus, info: api.ConsumerInfo, now: datetime) -> ConsumerFigures:
    """One durable consumer: lag, unacknowledged, redelivered, and its oldest pending age."""
    unacked = (info.num_pending or 0) + (info.num_ack_pending or 0)
    age = await _oldest_pending_age(bus, info, now) if unacked else None
    return ConsumerFigures(
        name=info.name,
        pending=info.num_pending or 0,
        ack_pending=info.num_ack_pending or 0,
        redelivered=info.num_redelivered or 0,
        oldest_pending_age_s=age,
    )


async def _oldest_pending_age(bus: Bus, info: api.ConsumerInfo, now: datetime) -> float | None:
    """Seconds since the oldest message the consumer has not acknowledged reached the stream:
    the first of its subjects after its ack floor (everything up to the floor is acknowledged)."""
    floor = info.ack_floor.stream_seq if info.ack_floor and info.ack_floor.stream_seq else 0
    config = info.config
    filters = list(config.filter_subjects or []) or [config.filter_subject or ">"]
    times = []
    for subject in filters:
        with contextlib.suppress(Exception):  # nothing of that subject after the floor
            msg = await bus.js.get_msg(info.stream_name, seq=floor + 1, subject=subject, next=True)
            if msg.time is not None:
                times.append(msg.time)
    if not times:
        return None
    return round(max(0.0, (now - min(times)).total_seconds()), 3)


async def _dead_letters(bus: Bus, workspace_id: str) -> DeadLetters:
    """Parked messages: how many in all, and this workspace's by consumer."""
    s = bus.settings
    total: int | None = None
    by_consumer: dict[str, int] = {}
    with contextlib.suppress(Exception):
        total = (await bus.js.stream_info(s.dlq_stream)).state.messages
        mine = await bus.js.stream_info(
            s.dlq_stream, subjects_filter=f"{s.dlq_root}.{workspace_id}.*"
        )
        for subject, count in (mine.state.subjects or {}).items():
            by_consumer[subject.rsplit(".", 1)[-1]] = int(count)
    return DeadLetters(total=total, workspace=sum(by_consumer.values()), by_consumer=by_consumer)
