"""Dead letters of the caller's workspace: what could never be handled, why, and replay."""

from __future__ import annotations

import contextlib
from typing import Any

from baton_common.bus import dead_letters, replay_dead_letter
from fastapi import APIRouter, Depends, Path, Query
from nats.js.errors import NotFoundError

from baton_gateway.api import Services
from baton_gateway.domain import NotFound, Principal
from baton_gateway.routes.deps import allowed, services_of

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
    except NotFoundError:
        raise NotFound(f"no dead letter {seq}") from None
    if (
        s.bus.workspace_of((msg.headers or {}).get("Baton-Original-Subject", ""))
        != who.workspace_id
    ):
        raise NotFound(f"no dead letter {seq}")
    await replay_dead_letter(s.bus, msg)  # type: ignore[arg-type]
    with contextlib.suppress(NotFoundError):
        await s.bus.js.delete_msg(stream, seq)
    return {"seq": seq, "replayed": True}


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
