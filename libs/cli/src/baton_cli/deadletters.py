"""``baton deadletters``: what the consumers parked, why, and a way to send it back."""

from __future__ import annotations

from baton_common.bus import Bus, dead_letters, replay_dead_letter
from baton_common.settings import Settings


async def deadletters(consumer: str | None, *, replay: bool) -> int:
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
            for msg in parked:
                await replay_dead_letter(bus, msg)
                # Handed back: if it fails again it is parked again, with its new reason.
                await bus.js.delete_msg(bus.settings.dlq_stream, msg.metadata.sequence.stream)
            print(f"replayed {len(parked)} message(s) to their original subjects")
        return 0
    finally:
        await bus.close()
