"""Dead letters of the caller's workspace: what could never be handled, why, and replay."""

from __future__ import annotations

import json
from typing import Any

from baton_common.bus import dead_letters
from baton_common.busauth import publisher_of, replay_subject
from fastapi import APIRouter, Depends, Path, Query
from nats.errors import NoRespondersError
from nats.js.errors import BadRequestError, NotFoundError

from baton_gateway.domain import Invalid, NotFound, Principal, Unavailable
from baton_gateway.routes.deps import allowed, services_of
from baton_gateway.services import Services

router = APIRouter(prefix="/v1/deadletters", tags=["dead letters"])
Admin = Depends(allowed("manage", "dead letters"))


@router.get("")
async def list_dead_letters(
    who: Principal = Admin,
    s: Services = Depends(services_of),
    consumer: str | None = Query(None, pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    parked = await dead_letters(s.bus, consumer, limit, workspace=who.workspace_id)
    return {
        "items": [_row(m.metadata.sequence.stream, m.subject, m.headers, m.data) for m in parked]
    }


@router.post("/{seq}/replay", status_code=202)
async def replay(
    seq: int = Path(ge=1, le=2**63 - 1, description="the dead letter's `seq`"),
    who: Principal = Admin,
    s: Services = Depends(services_of),
) -> dict[str, Any]:
    """Send one parked message back to its original subject (after its cause was fixed)."""
    stream = s.bus.settings.dlq_stream
    try:
        msg = await s.bus.js.get_msg(stream, seq)
    except (NotFoundError, BadRequestError):  # gone, or past the stream's end
        raise NotFound(f"no dead letter {seq}") from None
    headers = msg.headers or {}
    if s.bus.workspace_of(headers.get("Baton-Original-Subject", "")) != who.workspace_id:
        raise NotFound(f"no dead letter {seq}")
    if headers.get("Baton-Consumer") == "relay":
        raise Invalid(
            f"dead letter {seq} is an event the bus refused ({headers.get('Baton-Reason')}): "
            "it cannot be sent again; its execution has failed"
        )
    await _replay_by_publisher(s, seq, headers.get("Baton-Original-Subject", ""))
    return {"seq": seq, "replayed": True}


async def _replay_by_publisher(s: Services, seq: int, subject: str) -> None:
    """The service whose key may publish on ``subject`` sends it back (service.serve_replays):
    the gateway's own key cannot write other services' events."""
    settings = s.bus.settings
    role = publisher_of(subject, settings.subject_root, settings.stream)
    if role is None:
        raise Invalid(
            f"dead letter {seq}: no service publishes on {subject}; replay it as the "
            "operator (`baton deadletters --replay --from-bus`)"
        )
    request = json.dumps({"seq": seq}).encode()
    try:
        reply = await s.bus.request(replay_subject(settings.subject_root, role), request, 10)
    except (TimeoutError, NoRespondersError):
        raise Unavailable(f"dead letter {seq}: no {role} is running to send it back") from None
    answer = json.loads(reply.data)
    if "error" in answer:
        raise Unavailable(f"dead letter {seq}: {role} could not send it back: {answer['error']}")


def _row(seq: int, subject: str, headers: dict[str, str] | None, data: bytes) -> dict[str, Any]:
    h = headers or {}
    return {
        "seq": seq,
        "consumer": h.get("Baton-Consumer"),
        "subject": h.get("Baton-Original-Subject"),
        "reason": h.get("Baton-Reason"),
        "deliveries": h.get("Baton-Deliveries"),
        "data": data[:2000].decode(errors="replace"),
    }
