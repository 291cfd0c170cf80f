"""Intake: record requests and commands durably, once; the relay publishes them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from baton_common import contracts as c
from baton_common.events import Event
from baton_common.relay import Relay
from baton_common.store import (
    Commit,
    ConcurrencyConflict,
    MemoryEventStore,
    PostgresEventStore,
    commit_of,
    run_sync,
)
from baton_common.telemetry import current_traceparent

from baton_gateway.domain import Conflict, ExecutionRequest, NotFound

log = logging.getLogger(__name__)

Waiter = asyncio.Future[list[tuple[int, bytes]]]
GROUP_MAX = 500  # submissions committed together at most (a commit of 500 events: ~10 ms)

COMMANDS: dict[str, type[Event]] = {
    "pause": c.ExecutionPauseRequested,
    "resume": c.ExecutionResumeRequested,
    "cancel": c.ExecutionCancelRequested,
}


_ASKED = {"request", "plan", "inputs", "idempotency_key", "source", "schedule_id", "trigger_id"}
_ASKED |= {"trigger_chain", "actor", "plan_ref"}


def execution_id_for(workspace_id: str, idempotency_key: str | None) -> UUID:
    """A fixed id per (workspace, idempotency key); a fresh one without a key."""
    if idempotency_key is None:
        return uuid4()
    return uuid5(NAMESPACE_URL, f"baton:{workspace_id}:{idempotency_key}")


class Handoff(Protocol):
    """Committed requests with a plan, straight to the executor."""

    def __call__(self, states: list[bytes]) -> None:
        """From any thread: published soon, from the event loop."""

    async def now(self, states: list[bytes]) -> None:
        """From the event loop: on the socket before this returns."""


class IntakeApp:
    """Synchronous (call it from a thread): the store is."""

    def __init__(self, store: PostgresEventStore | MemoryEventStore, relay: Relay | None) -> None:
        self.store = store
        self.relay = relay
        self.commits = 0
        # Set by main.py: hands requests with a plan straight to the executor (one bus hop
        # sooner); the relay's stream copy stays the durable path.
        self.direct: Handoff | None = None
        # Group commit of concurrent submissions (``_commit_grouped``), on the event loop.
        self._in_flight = False
        self._waiting: list[tuple[Event, Waiter]] = []
        self._drainer: asyncio.Task[None] | None = None

    def load(self, execution_id: UUID) -> ExecutionRequest | None:
        return ExecutionRequest.rebuild(execution_id, self.store.load(execution_id))

    def submit_many(
        self, workspace_id: str, bodies: list[dict[str, Any]]
    ) -> list[tuple[UUID, bool]]:
        """Record many requests in one commit; if any key was used before, one by one."""
        events = [self._requested(workspace_id, body) for body in bodies]
        try:
            rows = self.store.commit(Commit(events=events))
        except ConcurrencyConflict:
            if len(events) == 1:
                return [self.submit(workspace_id, bodies[0])]
            return [self.submit(workspace_id, body) for body in bodies]
        self.commits += 1
        self._published(rows, planned=[e.plan is not None for e in events])
        return [(e.aggregate_id, True) for e in events]

    def _requested(self, workspace_id: str, body: dict[str, Any]) -> c.ExecutionRequested:
        key = body.get("idempotency_key")
        agg = ExecutionRequest(execution_id_for(workspace_id, key))
        return agg.trigger(  # type: ignore[return-value]
            c.ExecutionRequested,
            workspace_id=workspace_id,
            correlation_id=agg.id,
            traceparent=current_traceparent(),
            request=body.get("request"),
            plan=body.get("plan"),
            plan_ref=body.get("plan_ref"),
            inputs=body.get("inputs") or {},
            idempotency_key=key,
            source=body.get("source", "api"),
            actor=body.get("actor"),
            review_plan=bool(body.get("review_plan")),
            schedule_id=body.get("schedule_id"),
            trigger_id=body.get("trigger_id"),
            trigger_chain=body.get("trigger_chain") or [],
            simulation=body.get("simulation"),
        )

    def on_start_requested(self, asks: list[c.StartRequested]) -> list[Event]:
        """Requests from other services (schedules, triggers, webhooks) as executions, once per
        idempotency key: one already recorded (or twice in this batch) starts nothing new."""
        events: list[Event] = []
        seen: set[UUID] = set()
        for ask in asks:
            execution_id = execution_id_for(ask.workspace_id, ask.idempotency_key)
            if execution_id in seen or self.store.load(execution_id):
                continue
            seen.add(execution_id)
            body = ask.model_dump(include=_ASKED)
            event = self._requested(ask.workspace_id, body)
            events.append(event.model_copy(update={"causation_id": ask.event_id}))
        return events

    def on_cancel_requested(
        self, asks: list[c.CancelRequested], pending: list[Event]
    ) -> list[Event]:
        """Cancels other services ask for (a schedule's ``cancel_previous``), once each. The
        execution may have been asked for in this same batch (``pending``); one not recorded
        at all yet is retried later (its start is on its way)."""
        new: dict[UUID, Event] = {
            e.aggregate_id: e for e in pending if isinstance(e, c.ExecutionRequested)
        }
        events: list[Event] = []
        done: set[UUID] = set()
        for ask in asks:
            agg = self._request_of(ask.execution_id, new)
            if agg is None or agg.request is None:
                raise NotFound(f"execution {ask.execution_id} is not recorded yet")
            if agg.cancel_requested or ask.execution_id in done:
                continue
            done.add(ask.execution_id)
            fields: dict[str, Any] = agg.request.caused(actor=ask.actor, reason=ask.reason)
            fields["causation_id"] = ask.event_id
            events.append(agg.trigger(c.ExecutionCancelRequested, **fields))
        return events

    def _request_of(self, execution_id: UUID, new: dict[UUID, Event]) -> ExecutionRequest | None:
        if execution_id in new:
            agg = ExecutionRequest(execution_id)
            agg.apply(new[execution_id])
            return agg
        return self.load(execution_id)

    def submit(self, workspace_id: str, body: dict[str, Any]) -> tuple[UUID, bool]:
        """Record a request; returns (execution id, created). A repeated key returns the first."""
        event = self._requested(workspace_id, body)
        try:
            rows = self.store.commit(Commit(events=[event]))
            self.commits += 1
        except ConcurrencyConflict:
            return self._repeated(event)
        self._published(rows, planned=[event.plan is not None])
        return event.aggregate_id, True

    async def submit_async(self, workspace_id: str, body: dict[str, Any]) -> tuple[UUID, bool]:
        """``submit`` from the event loop: the commit without a thread hop (a store read only
        when the idempotency key was seen before)."""
        event = self._requested(workspace_id, body)
        try:
            rows = await self._commit_grouped(event)
        except ConcurrencyConflict:
            return await run_sync(self._repeated, event)
        if self.relay is not None:  # first: the stream should carry the request before the
            self.relay.committed(rows)  # executor's events (views and replay fold in that order)
        if self.direct is not None and event.plan is not None:
            # Before the rest of the request: someone waits for this. The loop turn that puts
            # it on the socket is also the relay's turn to publish the request's stream copy.
            try:
                await self.direct.now([rows[0][1]])
            except Exception as exc:  # a direct copy lost costs only time: the stream's follows
                log.debug("direct hand-off failed: %s", exc)
        return event.aggregate_id, True

    async def _commit_grouped(self, event: Event) -> list[tuple[int, bytes]]:
        """One request's commit; requests that arrive while a commit is in flight wait for it
        and are then committed together, in one transaction: a burst of single submissions
        costs a few commits, not one each. Alone, a request commits at once, as before."""
        if self._in_flight:
            waiter: Waiter = asyncio.get_running_loop().create_future()
            self._waiting.append((event, waiter))
            return await waiter
        self._in_flight = True
        try:
            rows = await commit_of(self.store, Commit(events=[event]))
            self.commits += 1
            return rows
        finally:
            if self._waiting:
                self._drainer = asyncio.create_task(self._drain())
            else:
                self._in_flight = False

    async def _drain(self) -> None:
        """Commit the waiting requests in groups until none is left."""
        group: list[tuple[Event, Waiter]] = []
        try:
            while self._waiting:
                group = [(e, w) for e, w in self._waiting[:GROUP_MAX] if not w.done()]
                del self._waiting[:GROUP_MAX]
                await self._commit_group(group)
        except BaseException as exc:  # stopped: nobody may wait for an answer that never comes
            for _, waiter in group + self._waiting:
                _settle(waiter, exc)
            self._waiting.clear()
            raise
        finally:
            self._in_flight = False

    async def _commit_group(self, group: list[tuple[Event, Waiter]]) -> None:
        """The group in one commit; if that fails (a repeated key, an event too large, the
        store gone), each alone, so that each request gets its own answer."""
        if not group:
            return
        try:
            rows = await commit_of(self.store, Commit(events=[e for e, _ in group]))
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0][1], exc)
                return
            for event, waiter in group:
                try:
                    _settle(waiter, await commit_of(self.store, Commit(events=[event])))
                    self.commits += 1
                except Exception as alone:
                    _settle(waiter, alone)
            return
        self.commits += 1
        for (_, waiter), row in zip(group, rows, strict=True):
            _settle(waiter, [row])

    def _repeated(self, event: c.ExecutionRequested) -> tuple[UUID, bool]:
        """A request whose key was used before: the first one, if it asked the same."""
        existing = self.load(event.aggregate_id)
        if existing is None or not existing.same_as(event):  # type: ignore[arg-type]
            raise Conflict(
                f"idempotency key {event.idempotency_key!r} was already used for a different request"
            ) from None
        return event.aggregate_id, False

    def command(
        self, execution_id: UUID, name: str, reason: str | None, actor: str | None = None
    ) -> None:
        extra = {"reason": reason} if name in ("pause", "cancel") else {}
        self.record(execution_id, COMMANDS[name], actor, **extra)

    def record(
        self, execution_id: UUID, command: type[Event], actor: str | None, **extra: Any
    ) -> None:
        """Record a command about an execution (steering, a context write) after its request."""
        for _ in range(5):  # optimistic concurrency: another command may land first
            agg = self.load(execution_id)
            if agg is None or agg.request is None:
                raise NotFound(f"no execution {execution_id}")
            agg.trigger(command, **agg.request.caused(actor=actor), **extra)
            try:
                rows = self.store.commit(Commit(events=agg.collect()))
            except ConcurrencyConflict:
                continue
            self.commits += 1
            self._published(rows)
            return
        raise Conflict(f"execution {execution_id} is changing too fast; try again")

    def append(self, event: Event) -> None:
        """Record a command that is an aggregate of its own (a cache clear): new, so no race."""
        self._published(self.store.commit(Commit(events=[event])))
        self.commits += 1

    def _published(self, rows: list[tuple[int, bytes]], planned: list[bool] | None = None) -> None:
        """After a commit: everything to the relay, then requests with a plan straight to the
        executor (the request's stream copy should lead the executor's events)."""
        if self.relay is not None:
            self.relay.committed(rows)
        if self.direct is not None and planned and any(planned):
            self.direct([state for (_, state), p in zip(rows, planned, strict=True) if p])


def _settle(waiter: Waiter, outcome: list[tuple[int, bytes]] | BaseException) -> None:
    """A waiting request's rows, or its error (unless its caller went: the commit stands)."""
    if waiter.done():
        return
    if isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)
