"""NATS JetStream: connection, idempotent stream declaration, publishing with dedupe headers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import MaxPayloadError
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError

from baton_common.busauth import local_seed, sets_stream_limits
from baton_common.contracts.execution import StepDispatched, inline_of, subject_suffix
from baton_common.control import control_key, message_refused, signed_headers
from baton_common.events import Event, envelope_of
from baton_common.limits import human, limits
from baton_common.settings import Settings
from baton_common.telemetry import current_traceparent

log = logging.getLogger(__name__)

DUPLICATE_WINDOW_S = 600.0
PUBLISH_TIMEOUT_S = 10.0
HEADER_OVERHEAD = 16  # "NATS/1.0\r\n" and the blank line that ends the headers
SOURCE_HEADER = "Baton-Source"  # "<store>:<position>" of a stored event, set by the relay
HEADERS_ROOM = 4096  # more than our headers take (ids, type, traceparent): no need to count them


async def on_server(nc: Client) -> None:
    """Return once the server has read everything this connection has sent so far (a
    subscription just made, above all): another connection's request then finds it.

    nats-py's ``flush()`` alone does not promise that: its PING goes straight to the socket,
    ahead of commands still queued for the client's flusher task, so the PONG can come back
    before a SUB made just before reached the server (a call to a service that had said it was
    ready was answered "no responders": a CI flake). The queue is written first here, in order,
    by the flusher; then one PING behind it."""
    for _ in range(10_000):  # the flusher runs at the loop's next turns; never spin forever
        if not nc.pending_data_size or not nc.is_connected:
            break
        await asyncio.sleep(0)
    await nc.flush()


class Bus:
    """One NATS connection and its JetStream context, bound to a deployment's names."""

    def __init__(self, nc: Client, settings: Settings) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)
        self.settings = settings
        self.max_msg_size: int | None = None  # the event stream's own limit, if it has one
        self.control_key = control_key(settings)  # signs and checks control messages
        self.sets_limits = True  # brings an existing stream's limits to the settings (declare)
        self.on_reconnect: list[Callable[[], None]] = []  # called once connected again

    @classmethod
    async def connect(cls, settings: Settings, name: str) -> Bus:
        async def on_error(exc: Exception) -> None:
            log.warning("nats: %s", exc)

        async def on_disconnected() -> None:
            if not bus.nc.is_closed:  # nats-py calls this on our own close too: nothing to say
                log.warning("nats: disconnected from %s; reconnecting", settings.nats_url)

        async def on_reconnected() -> None:
            log.warning("nats: connected again to %s", settings.nats_url)
            for hook in bus.on_reconnect:
                hook()

        nc = await nats.connect(
            settings.nats_url,
            name=f"baton-{name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            error_cb=on_error,
            reconnected_cb=on_reconnected,
            disconnected_cb=on_disconnected,
            **credentials(settings, name),
        )
        bus = cls(nc, settings)
        bus.sets_limits = sets_stream_limits(name)
        bus.check_max_payload()
        await bus.declare()
        return bus

    def check_max_payload(self) -> None:
        """Warn when the server takes smaller messages than the store lets an event be: the
        relay would have to park the events in between (``relay.py``)."""
        server, stored = self.nc.max_payload, limits().event
        if server and server < stored:
            log.warning(
                "nats-server accepts messages up to %s (max_payload), events up to %s are "
                "stored (BATON_MAX_EVENT_BYTES): larger ones will be parked, and their "
                "executions fail. Lower BATON_MAX_EVENT_BYTES or raise max_payload.",
                human(server),
                human(stored),
            )

    async def declare(self) -> None:
        """Create the event stream and the dead-letter stream if they are missing, and bring the
        event stream's limits (age, size, duplicate window) to the settings' (idempotent)."""
        s = self.settings
        await self._ensure_stream(
            s.stream, s.subject_root, limited=self.sets_limits, **stream_limits(s)
        )
        config = (await self.js.stream_info(s.stream)).config
        if config.max_msg_size is not None and config.max_msg_size > 0:
            self.max_msg_size = config.max_msg_size
        await self._ensure_stream(s.dlq_stream, s.dlq_root)

    async def _ensure_stream(
        self, name: str, root: str, *, limited: bool = False, **extra: Any
    ) -> None:
        """A stream of every subject under ``root``, on file, kept by limits: created unless it
        is there; ``limited``: an existing one takes the limits in ``extra``."""
        config = api.StreamConfig(
            name=name,
            subjects=[f"{root}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            **extra,
        )
        try:
            info = await self.js.stream_info(name)
        except NotFoundError:
            info = None
        if info is not None:
            if limited:
                await self._update_limits(info.config, config)
            return
        try:
            await self.js.add_stream(config)
        except BadRequestError as exc:
            if exc.err_code != 10058:  # created meanwhile by another process: fine
                raise

    async def _update_limits(self, current: api.StreamConfig, wanted: api.StreamConfig) -> None:
        """An existing stream takes the limits set now (a stream made before they existed has
        none); everything else in its configuration stays as it is."""
        changed = {
            k: getattr(wanted, k) for k in _LIMITS if getattr(current, k) != getattr(wanted, k)
        }
        if not changed:
            return
        try:
            await self.js.update_stream(replace(current, **changed))
        except Exception as exc:  # the stream works as it is; the next start tries again
            log.warning(
                "stream %s: its limits could not be set to %s: %s", current.name, changed, exc
            )
            return
        log.info("stream %s: limits set to %s", current.name, changed)

    def subject(self, event: Event) -> str:
        return event.subject(self.settings.subject_root)

    @staticmethod
    def headers(event: Event) -> dict[str, str]:
        headers = {"Nats-Msg-Id": str(event.event_id), "Baton-Type": event.type}
        traceparent = event.traceparent or current_traceparent()
        if traceparent:
            headers["traceparent"] = traceparent
        return headers

    async def publish(
        self, events: Sequence[Event], *, direct: str | None = None
    ) -> list[api.PubAck]:
        """Publish and wait for every ack; a re-published event id is dropped by the server.

        With ``direct``, each event (the same bytes, encoded once) also goes at once to that
        service's direct subject on core NATS, unsigned (``Consumer.listen_direct(signed=False)``:
        only for events the sender may publish on the stream all the same), so it is handled
        there while the stream stores its durable copy."""
        futures = []
        for e in events:
            data, headers = e.to_json(), self.headers(e)
            self.check_fits(data, headers)
            if direct is not None:
                await self.nc.publish(self.direct_subject(direct), data)
            futures.append(
                await self.js.publish_async(
                    self.subject(e), data, headers=headers, stream=self.settings.stream
                )
            )
        return list(await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S))

    async def publish_raw(
        self, states: Sequence[bytes], store: str = "", positions: Sequence[int] = ()
    ) -> list[api.PubAck]:
        """Publish stored events as they are (any version; consumers upcast on read). With
        ``store``, each carries its ``positions`` entry, where it is in that store's log: a
        consumer that keeps it knows where to read the store from if the stream drops what it
        has not seen (``SOURCE_HEADER``)."""
        futures = []
        for i, state in enumerate(states):
            subject, headers = self._addressed(state, store, positions[i] if store else 0)
            futures.append(
                await self.js.publish_async(
                    subject, state, headers=headers, stream=self.settings.stream
                )
            )
        return list(await asyncio.wait_for(asyncio.gather(*futures), PUBLISH_TIMEOUT_S))

    async def publish_raw_one(self, state: bytes, store: str = "", position: int = 0) -> api.PubAck:
        """One stored event, its ack awaited: the server's refusal comes back as its error
        (``BadRequestError``), where ``publish_async`` only times out (nats-py 2.16 raises it
        in the reply handler instead of setting it on the future)."""
        subject, headers = self._addressed(state, store, position)
        return await self.js.publish(subject, state, headers=headers, stream=self.settings.stream)

    def _addressed(self, state: bytes, store: str, position: int) -> tuple[str, dict[str, str]]:
        """The subject and headers of a stored event; ``MaxPayloadError`` if it cannot go."""
        head = envelope_of(state)
        if head is not None and head["type"] == StepDispatched.TYPE:
            head["inline"] = inline_of(state)  # its subject depends on this field
        if head is None or head.get("inline", False) is None:  # laid out otherwise: parsed
            head = json.loads(state)
        headers = {"Nats-Msg-Id": head["event_id"], "Baton-Type": head["type"]}
        if head.get("traceparent"):
            headers["traceparent"] = head["traceparent"]
        if store:
            headers[SOURCE_HEADER] = f"{store}:{position}"
        subject = f"{self.settings.subject_root}.{head['workspace_id']}.{head['type']}"
        subject += subject_suffix(head)  # as the event's own ``subject``
        self.check_fits(state, headers)
        return subject, headers

    def check_fits(self, data: bytes, headers: dict[str, str]) -> None:
        """``MaxPayloadError`` for a message the server (or the event stream's
        ``max_msg_size``) would refuse, before it is sent: the server counts the headers too (nats-py does not, and a refusal there closes the
        connection), and nats-py's ``publish_async`` never frees the slot of a message it
        refuses itself (4,000 refusals would stall every later publish)."""
        most = self.nc.max_payload
        if self.max_msg_size is not None:
            most = min(most, self.max_msg_size)
        room = most - len(data)
        if room >= HEADERS_ROOM:
            return  # the usual case, without counting the headers
        if room < HEADER_OVERHEAD + sum(len(k) + len(v) + 4 for k, v in headers.items()):
            raise MaxPayloadError

    def direct_subject(self, service: str) -> str:
        """A core NATS subject (outside the stream) on which ``service`` takes events straight
        from the process that committed them (``Consumer.listen_direct``)."""
        return f"{self.settings.subject_root}_direct.{service}"

    async def request(
        self, subject: str, data: bytes, timeout: float, headers: dict[str, str] | None = None
    ) -> Msg:
        """A control request (an RPC call), signed with the installation's control key."""
        signed = signed_headers(self.control_key, subject, data, headers)
        return await self.nc.request(subject, data, timeout, headers=signed)

    def verified(self, msg: Msg, what: str) -> bool:
        """Whether a control message (a request, a direct hand-over) was signed by this
        installation; one that was not is ignored with the reason logged (no answer: the
        caller times out)."""
        reason = message_refused(self.control_key, msg.subject, msg.data, msg.headers)
        if reason is not None:
            log.warning("%s on %s ignored: %s", what, msg.subject, reason)
        return reason is None

    async def publish_direct(self, service: str, states: Sequence[bytes]) -> None:
        """Hand committed events to ``service`` at once, in one message (one line each: a
        commit's events are handled as one batch there); their stream copies follow through the
        relay as always (the durable path), so a copy lost here costs only time."""
        if states:
            subject, data = self.direct_subject(service), b"\n".join(states)
            headers = signed_headers(self.control_key, subject, data)
            await self.nc.publish(subject, data, headers=headers)
            # nats-py queues it for its flusher task: one turn of the loop puts it on the
            # socket now, not after whatever the caller does next (the rest of an HTTP request).
            await asyncio.sleep(0)

    async def park(self, msg: Msg, consumer: str, reason: str) -> None:
        """Put a message that can never be handled on the dead-letter stream, with its reason."""
        meta = _meta(msg)
        headers = {
            "Baton-Reason": reason[:1000],
            "Baton-Consumer": consumer,
            "Baton-Original-Subject": msg.subject,
            "Baton-Original-Sequence": str(meta.get("stream_seq", "")),
            "Baton-Deliveries": str(meta.get("num_delivered", "")),
        }
        for key, value in (msg.headers or {}).items():
            headers.setdefault(key if key != "Nats-Msg-Id" else "Baton-Original-Msg-Id", value)
        # <dlq root>.<workspace>.<consumer>: a workspace reads its own dead letters by subject
        subject = f"{self.settings.dlq_root}.{self.workspace_of(msg.subject)}.{consumer}"
        await self.js.publish(subject, msg.data, headers=headers, stream=self.settings.dlq_stream)
        log.warning("parked message %s on %s: %s", msg.subject, subject, reason)

    async def park_refused(self, head: dict[str, Any], reason: str, relay: str) -> None:
        """Park a stored event the bus refused: its envelope (the whole event stays in the
        store, at ``head["position"]``) on the dead-letter stream, with the reason."""
        workspace = head.get("workspace_id") or "_"
        headers = {
            "Nats-Msg-Id": f"{head['event_id']}:parked",  # parked again after a crash: dropped
            "Baton-Reason": reason[:1000],
            "Baton-Consumer": "relay",
            "Baton-Relay": relay,
            "Baton-Original-Subject": f"{self.settings.subject_root}.{workspace}.{head['type']}",
            "Baton-Original-Msg-Id": str(head["event_id"]),
            "Baton-Position": str(head.get("position", "")),
        }
        subject = f"{self.settings.dlq_root}.{workspace}.relay"
        data = json.dumps(head).encode()
        await self.js.publish(subject, data, headers=headers, stream=self.settings.dlq_stream)
        log.warning("parked stored event %s (%s): %s", head["event_id"], head["type"], reason)

    def workspace_of(self, subject: str) -> str:
        """The workspace token of ``<root>.<workspace>.…``, or ``_`` for other subjects."""
        parts = subject.split(".")
        return parts[1] if len(parts) > 2 and parts[0] == self.settings.subject_root else "_"

    async def close(self) -> None:
        """Drain: handlers with a callback finish what they hold. Subscriptions read by hand (pull
        consumers, next_msg) are dropped first: nats-py's drain waits for their queues to be
        read, which nobody does once their reader stopped, so a pull still delivering (or its
        expiry notice) held every close for the whole drain timeout (30 s). What they held was
        not acknowledged: JetStream delivers it again."""
        for sub in list(getattr(self.nc, "_subs", {}).values()):
            if getattr(sub, "_cb", None) is None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        try:
            await self.nc.drain()
        except Exception:  # closing anyway
            await self.nc.close()


_LIMITS = ("max_age", "max_bytes", "duplicate_window")


def stream_limits(settings: Settings) -> dict[str, Any]:
    """The event stream's limits: its age and size (``BATON_STREAM_MAX_AGE`` / ``_MAX_BYTES``)
    and the duplicate window, which the server wants no longer than the age."""
    age = settings.stream_max_age_s
    return {
        "max_age": age,
        "max_bytes": settings.stream_max_bytes,
        "duplicate_window": min(DUPLICATE_WINDOW_S, age),
    }


def source_of(msg: Msg) -> tuple[str, int] | None:
    """The store and position a relayed message came from (``SOURCE_HEADER``), if it says."""
    value = (msg.headers or {}).get(SOURCE_HEADER)
    if not value:
        return None
    store, _, position = value.rpartition(":")
    return (store, int(position)) if store and position.isdigit() else None


def credentials(settings: Settings, name: str) -> dict[str, Any]:
    """How process ``name`` proves who it is to the server (``busauth``): a configured NKey seed
    or JWT creds file, else its role's seed in the local engine's data folder, else nothing
    (a server without authentication, as in the integration tests)."""
    out: dict[str, Any] = {}
    if settings.nats_creds:
        out["user_credentials"] = str(settings.nats_creds)
    elif seed := settings.nats_nkey or local_seed(settings.data_dir, name):
        out["nkeys_seed"] = str(seed)
    if settings.nats_tls_ca:
        import ssl

        out["tls"] = ssl.create_default_context(cafile=str(settings.nats_tls_ca))
    return out


def _meta(msg: Msg) -> dict[str, Any]:
    try:
        md = msg.metadata
        return {"stream_seq": md.sequence.stream, "num_delivered": md.num_delivered}
    except Exception:
        return {}


async def dead_letters(
    bus: Bus, consumer: str | None = None, limit: int = 1000, workspace: str | None = None
) -> list[Msg]:
    """Read parked messages (oldest first) without consuming them; of one workspace if given."""
    root = bus.settings.dlq_root
    subject = (
        f"{root}.>"
        if not (consumer or workspace)
        else f"{root}.{workspace or '*'}.{consumer or '*'}"
    )
    info = await bus.js.stream_info(bus.settings.dlq_stream, subjects_filter=subject)
    count = sum((info.state.subjects or {}).values())
    if count == 0:
        return []
    sub = await bus.js.subscribe(subject, ordered_consumer=True, stream=bus.settings.dlq_stream)
    out: list[Msg] = []
    try:
        while len(out) < min(limit, count):
            try:
                out.append(await sub.next_msg(timeout=1.0))
            except TimeoutError:
                break
    finally:
        await sub.unsubscribe()
    return out


async def replay_dead_letter(bus: Bus, msg: Msg) -> api.PubAck:
    """Send a parked message back to its original subject (after its cause was fixed)."""
    headers = dict(msg.headers or {})
    subject = headers.pop("Baton-Original-Subject")
    original_id = headers.pop("Baton-Original-Msg-Id", None)
    clean = {k: v for k, v in headers.items() if not k.startswith("Baton-")}
    if original_id:
        clean["Nats-Msg-Id"] = f"{original_id}:replayed"
    return await bus.js.publish(subject, msg.data, headers=clean, stream=bus.settings.stream)
