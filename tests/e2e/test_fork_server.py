"""`baton up` forks its services from a fork server (issue 32: the libraries' pages shared): each
is still a process of its own that looks as `baton serve <name>` did; a kill -9 takes only it and
the supervisor forks it again; SIGTERM stops every service, the fork server and the servers."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_engine
from tests.e2e.test_webhooks import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux"),
]


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ").strip()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_services_are_forked_restarted_by_a_fork_and_all_stopped() -> None:
    engine = start_engine()
    try:
        runtime = engine.runtime()
        forks = runtime["fork_server"]
        assert forks and parent(forks) == engine.proc.pid
        for name, pid in runtime["pids"].items():
            assert parent(pid) == forks, name  # forked, not started afresh
            assert command_line(pid) == f"{sys.executable} -m baton_cli serve {name}"
            assert os.getsid(pid) == pid, name  # its own session, as before

        old = runtime["pids"]["calendar"]
        os.kill(old, signal.SIGKILL)
        new = eventually(lambda: engine.runtime()["pids"]["calendar"], lambda pid: pid != old, 60)
        assert parent(new) == forks and alive(forks)
        assert all(alive(pid) for n, pid in runtime["pids"].items() if n != "calendar")
        port = engine.runtime()["health_ports"]["calendar"]
        eventually(lambda: _ready(port), bool, 60)  # the forked again calendar serves
    finally:
        engine.proc.send_signal(signal.SIGTERM)
        code = engine.proc.wait(90)
    assert code == 0
    gone = [forks, new, *runtime["servers"].values()]
    gone += [pid for n, pid in runtime["pids"].items() if n != "calendar"]
    deadline = time.monotonic() + 30
    while running := [pid for pid in gone if alive(pid)]:
        assert time.monotonic() < deadline, f"still running after SIGTERM: {running}"
        time.sleep(0.1)
    up_log = (engine.data_dir / "up.log").read_text()
    assert "did not stop" not in up_log and "not forked" not in up_log
    assert "calendar exited (-9)" in up_log


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except httpx.TransportError:
        return False
