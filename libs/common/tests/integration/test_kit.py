"""The kit's request/reply server on real NATS, in a service process: SIGTERM drains (no new
call is taken, the one in hand is answered, the process exits cleanly)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from baton_common.bus import Bus
from baton_common.settings import Settings
from baton_common.testing import service_env, until
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from pydantic import BaseModel

pytestmark = pytest.mark.integration

# A service of one slow verb: it marks that it started, and answers once the test releases it.
SERVICE = """
import asyncio, pathlib, sys
from pydantic import BaseModel
from baton_common.kit.rpc import CallServer
from baton_common.service import Runtime
from baton_common.settings import Settings

class Call(BaseModel):
    op: str

class Reply(BaseModel):
    status: int
    detail: str = ""

async def main():
    marks = pathlib.Path(sys.argv[1])
    runtime = await Runtime.open("kittest", Settings())

    async def slow(call):
        (marks / "started").touch()
        while not (marks / "release").exists():
            await asyncio.sleep(0.02)
        return Reply(status=200, detail="answered while draining")

    subject = runtime.settings.subject_root + "_rpc.kittest"
    await CallServer(runtime, "kittest", subject, Call, Reply, {"slow": slow}).start()
    (marks / "ready").touch()
    await runtime.serve_forever()

asyncio.run(main())
"""


class Reply(BaseModel):
    status: int
    detail: str = ""


def spawn(settings: Settings, marks: Path) -> subprocess.Popen[bytes]:
    env = service_env(settings, OTEL_SDK_DISABLED="true")
    with (marks / "service.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-c", SERVICE, str(marks)], env=env, stdout=log, stderr=log
        )


async def test_sigterm_answers_the_call_in_hand_and_takes_no_new_one(
    bus: Bus, settings: Settings, tmp_path: Path
) -> None:
    service = spawn(settings, tmp_path)
    try:
        await until(lambda: (tmp_path / "ready").exists(), "the service to be ready", 60)
        subject = f"{settings.subject_root}_rpc.kittest"
        in_hand = asyncio.create_task(bus.request(subject, b'{"op": "slow"}', 60))
        await until(lambda: (tmp_path / "started").exists(), "the call to be in hand")
        service.send_signal(signal.SIGTERM)

        async def refused() -> bool:  # the subscription is drained: nobody takes a new call
            try:  # a call sent before the signal is handled waits its turn (and is answered)
                await bus.request(subject, b'{"op": "slow"}', 1)
            except NoRespondersError:
                return True
            except NatsTimeout:
                return False
            return False

        await until(refused, "the service to stop taking calls")
        assert not in_hand.done()
        (tmp_path / "release").touch()
        reply = Reply.model_validate_json((await in_hand).data)
        assert reply == Reply(status=200, detail="answered while draining")
        assert await asyncio.to_thread(service.wait, 60) == 0
    finally:
        if service.poll() is None:
            service.kill()
    assert "Traceback" not in (tmp_path / "service.log").read_text()
