"""``baton deadletters``: what the consumers parked, why, and a way to send it back."""

from __future__ import annotations

from baton_common.bus import Bus, dead_letters, replay_dead_letter
from baton_common.settings import Settings

from baton_cli.client import call


def deadletters_api(url: str, consumer: str | None, *, replay: bool) -> int:
    """Through the gateway: the caller's workspace's dead letters (admin or owner key)."""
    params = {"consumer": consumer} if consumer else None
    parked = call("GET", url, "/v1/deadletters", params=params)["items"]
    if not parked:
        print("no parked messages")
        return 0
    for m in parked:
        print(f"#{m['seq']:<6} {m['consumer'] or '?':<10} {m['subject'] or '?':<40} "
              f"{(m['reason'] or '')[:160]}")  # fmt: skip
    if replay:
        again = [m for m in parked if m["consumer"] != "relay"]  # refused by the bus: not again
        for m in again:
            call("POST", url, f"/v1/deadletters/{m['seq']}/replay")
        print(f"replayed {len(again)} message(s) to their original subjects")
    return 0


async def deadletters(consumer: str | None, *, replay: bool) -> int:
    """Straight from the bus: every workspace's (operators with NATS access)."""
    bus = await Bus.connect(Settings(), "cli")
    try:
        parked = await dead_letters(bus, consumer)
        if not parked:
            print("no parked messages")
            return 0
        for msg in parked:
            h = msg.headers or {}
            print(f"#{msg.metadata.sequence.stream:<6} {h.get('Baton-Consumer', '?'):<10} "
                  f"{h.get('Baton-Original-Subject', '?'):<40} {h.get('Baton-Reason', '')[:160]}")  # fmt: skip
        if replay:
            parked = [m for m in parked if (m.headers or {}).get("Baton-Consumer") != "relay"]
            for msg in parked:
                await replay_dead_letter(bus, msg)
                # Handed back: if it fails again it is parked again, with its new reason.
                await bus.js.delete_msg(bus.settings.dlq_stream, msg.metadata.sequence.stream)
            print(f"replayed {len(parked)} message(s) to their original subjects")
        return 0
    finally:
        await bus.close()
