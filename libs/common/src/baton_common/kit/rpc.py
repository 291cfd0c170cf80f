"""One request/reply server for every service that answers calls over NATS.

A service declares what it answers: the subject, the typed call and reply, and a table of verb →
handler. The server does the rest the same way everywhere: one queue group per service (a call
is answered by one replica), a call not signed with the installation's control key is ignored
with the reason logged (``Bus.verified``: no answer, the caller times out), a call that does not
parse is a 422 naming the field, a refusal the handler raises is its status, a failure is a 503
(the caller hears it at once, never a timeout), each call is a server span continuing the
caller's trace, counted and timed in ``/metrics``, and SIGTERM drains: no new calls, the ones in
hand are answered.

Handlers that change something commit before they answer (``commit_retrying``), so a 2xx means
it is recorded; a lost race with another replica is settled by the store's version check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import BaseModel, ValidationError

from baton_common import perf, tracing
from baton_common.bus import on_server
from baton_common.errors import ServiceError
from baton_common.store import Commit, ConcurrencyConflict, run_sync

if TYPE_CHECKING:
    from baton_common.service import Runtime

log = logging.getLogger(__name__)
ANY = "*"  # a handler under this verb takes every verb the table does not name
ATTEMPTS = 5  # lost races before a call gives up (503)


C = TypeVar("C", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)
T = TypeVar("T")
Handler = Callable[[C], Awaitable[R]]


def _op(call: Any) -> str:
    return str(call.op)


class CallServer(Generic[C, R]):
    """Answers one subject's calls for this process, from a table of verb → handler.

    ``span`` names each call's server span (``<service> <span>``: ``hitl decision``); its
    attribute ``baton.rpc.verb`` says which verb. A handler that raises a ``ServiceError``
    (every service's domain errors derive from it) answers with its status and detail;
    ``refusals`` are more error types that carry a ``status``. ``what`` names a call in the
    log line of one that is ignored for its signature (``<what> on <subject> ignored: unsigned``;
    by default ``<service> call``)."""

    def __init__(
        self,
        runtime: Runtime,
        service: str,
        subject: str,
        call: type[C],
        reply: type[R],
        handlers: Mapping[str, Handler[C, R]],
        *,
        verb: Callable[[C], str] = _op,
        refusals: tuple[type[Exception], ...] = (),
        span: str = "call",
        what: str | None = None,
    ) -> None:
        self.runtime, self.service, self.subject = runtime, service, subject
        self.call, self.reply, self.handlers, self.verb = call, reply, handlers, verb
        self.refusals: tuple[type[Exception], ...] = (ServiceError, ConcurrencyConflict, *refusals)
        self.span = f"{service} {span}"  # a trace back end groups calls by span name
        self.what = what or f"{service} call"
        self.sub: Subscription | None = None

    async def start(self) -> None:
        """Take calls (queue group: one replica answers each); drain them when the runtime stops."""
        nc = self.runtime.bus.nc
        self.sub = await nc.subscribe(self.subject, queue=self.service, cb=self.on_request)
        await on_server(nc)  # the server has the subscription before the service says it is ready
        self.runtime.on_stop.append(self.stop)

    async def stop(self) -> None:
        """Take no new calls, answer the ones in hand (SIGTERM drain)."""
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.drain()

    async def on_request(self, msg: Msg) -> None:
        if not self.runtime.bus.verified(msg, self.what):  # unsigned, forged or stale: no answer
            return
        reply = await self.answer(msg.data, msg.headers)
        if msg.reply:
            await msg.respond(reply.model_dump_json().encode())

    async def answer(self, data: bytes, headers: Mapping[str, str] | None = None) -> R:
        """The reply to one call, whatever happens on the way."""
        started = time.perf_counter()
        try:
            call = self.call.model_validate_json(data)
        except ValidationError as exc:
            reply, verb = self.reply(status=422, detail=f"malformed call: {brief(exc)}"), "-"
        else:
            verb = self.verb(call)
            with tracing.serving(self.span, headers, {"baton.rpc.verb": verb}):
                reply = await self._handle(verb, call)
        status = getattr(reply, "status", 0)
        perf.RPC_CALLS.labels(self.service, verb, str(status)).inc()
        perf.RPC_SECONDS.labels(self.service).observe(time.perf_counter() - started)
        return reply

    async def _handle(self, verb: str, call: C) -> R:
        handler = self.handlers.get(verb) or self.handlers.get(ANY)
        if handler is None:
            return self.reply(status=404, detail=f"no operation {verb!r} in {self.service}")
        try:
            return await handler(call)
        except self.refusals as exc:
            return self.reply(status=_status(exc), detail=_detail(exc))
        except Exception as exc:  # the store is down, say: the caller hears it at once
            log.exception("%s call %s failed", self.service, verb)
            detail = f"{self.service} could not do it ({type(exc).__name__}); try again"
            return self.reply(status=503, detail=detail)


def _status(exc: Exception) -> int:
    if isinstance(exc, ConcurrencyConflict):
        return 409
    return int(getattr(exc, "status", 400))


def _detail(exc: Exception) -> str:
    if isinstance(exc, ConcurrencyConflict):
        return "it changed meanwhile; read it and try again"
    return str(getattr(exc, "detail", None) or exc)


def brief(exc: ValidationError) -> str:
    """What is wrong with a call, field by field (``decision: Input should be …``)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
    )


async def commit_retrying(
    runtime: Runtime,
    store: Any,
    lock: asyncio.Lock,
    decide: Callable[[], tuple[Commit | None, T]],
    *,
    trace: str | None = None,
) -> T:
    """Decide (``decide`` reads the aggregates and returns what to commit, and the result) and
    commit under ``lock``; a lost race (another replica, a tick) decides again on the aggregates
    as the log now says. ``trace`` names a span that the new events start from, a child of the
    call's, so what the call caused joins the caller's trace. Returns ``decide``'s result once
    its commit is made; after ``ATTEMPTS`` lost races, a 503."""
    for _ in range(ATTEMPTS):
        async with lock:
            commit, result = await run_sync(decide)
            if commit is None:
                return result
            if trace:
                commit = replace(commit, events=tracing.begin(trace, commit.events))
            try:
                rows = await run_sync(store.commit, commit)
            except ConcurrencyConflict:
                log.info("%s: changed meanwhile; deciding again", trace or "a call")
                continue
        if runtime.relay and rows:
            runtime.relay.committed(rows)
        return result
    raise ServiceError("it kept changing while we tried; try again", status=503)
