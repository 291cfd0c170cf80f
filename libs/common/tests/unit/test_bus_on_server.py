"""``on_server``: a subscription reaches the server before the PING whose PONG says "ready".

A few lines of the NATS protocol on a loopback socket record the order in which the client's
commands arrive; a real server reads them in that order, so a SUB behind the PING was not yet
there when the PONG came back (a call from another connection then found "no responders")."""

from __future__ import annotations

import asyncio
import json

import nats
from baton_common.bus import on_server

INFO = {
    "server_id": "fake",
    "version": "2.10.0",
    "proto": 1,
    "headers": True,
    "max_payload": 1 << 20,
}


class Recorder:
    """Speaks just enough NATS to connect, and writes down every command verb it reads."""

    def __init__(self) -> None:
        self.verbs: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"INFO {json.dumps(INFO)}\r\n".encode())
        await writer.drain()
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().decode()
            self.verbs.append(verb)
            if verb == "PING":
                writer.write(b"PONG\r\n")
                await writer.drain()


async def ignore(msg: object) -> None:
    pass


async def sent_after_connect(flush: str) -> list[str]:
    """The verbs a fake server reads after the handshake: one subscription, then ``flush``."""
    recorder = Recorder()
    server = await asyncio.start_server(recorder.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    nc = await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
    try:
        handshake = len(recorder.verbs)  # CONNECT and its PING
        await nc.subscribe("calls.planner", queue="planner", cb=ignore)
        await (on_server(nc) if flush == "on_server" else nc.flush())
        for _ in range(1000):  # whatever is still on its way arrives
            if len(recorder.verbs) >= handshake + 2:
                break
            await asyncio.sleep(0.01)
        return recorder.verbs[handshake:]
    finally:
        await nc.close()
        server.close()


async def test_on_server_sends_the_subscription_ahead_of_its_ping() -> None:
    assert await sent_after_connect("on_server") == ["SUB", "PING"]


async def test_nats_py_flush_alone_sends_its_ping_ahead_of_a_queued_subscription() -> None:
    """Why ``on_server`` exists: should nats-py ever keep the order itself, this fails and the
    work-around can go."""
    assert await sent_after_connect("plain") == ["PING", "SUB"]
