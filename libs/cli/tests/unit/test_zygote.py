"""The fork server of `baton up` (issue 32): each service is forked from one process that imported
what they all import, and is still a process of its own: its own pid and session, its log file,
its environment, its command line, and an exit status the supervisor hears (kill -9 included)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from baton_cli.zygote import Forked, ForkServer

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forks on Linux")

# A service that keeps trying to reach its bus: alive until it is killed.
UNREACHABLE = {"NATS_URL": "nats://127.0.0.1:1", "DATABASE_URL": "postgresql://x@127.0.0.1:1/x"}


@pytest.fixture
def forks(tmp_path: Path) -> Iterator[ForkServer]:
    server = ForkServer(tmp_path / "fork-server.log", dict(os.environ))
    server.start()
    spawn = server.spawn
    children: list[Forked] = []

    def tracked(*args: object) -> Forked:
        children.append(spawn(*args))  # type: ignore[arg-type]
        return children[-1]

    server.spawn = tracked  # type: ignore[method-assign]
    yield server
    for child in children:  # a failed test leaves none running
        child.kill()
    server.stop()


def serve(forks: ForkServer, tmp_path: Path, name: str, **env: str) -> tuple[Forked, Path]:
    log = tmp_path / f"{name}.log"
    argv = [sys.executable, "-m", "baton_cli", "serve", name]
    return forks.spawn(name, argv, {**os.environ, **UNREACHABLE, **env}, log), log


def stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name: state, ppid, pgrp, session…"""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def test_a_forked_service_is_a_process_of_its_own(forks: ForkServer, tmp_path: Path) -> None:
    projector, log = serve(forks, tmp_path, "projector")
    hitl, _ = serve(forks, tmp_path, "hitl")
    assert forks.pid is not None and projector.pid != hitl.pid
    assert int(stat(projector.pid)[1]) == forks.pid  # forked, not started afresh
    assert int(stat(projector.pid)[3]) == projector.pid  # the leader of its own session
    cmdline = Path(f"/proc/{projector.pid}/cmdline").read_bytes().decode()
    assert cmdline.rstrip("\0") == f"{sys.executable} -m baton_cli serve projector"
    assert Path(f"/proc/{projector.pid}/comm").read_text().strip().startswith("python")
    wait_for(lambda: '"service": "projector"' in log.read_text(), "the projector's own log")

    os.kill(projector.pid, signal.SIGKILL)
    assert projector.wait(30) == -signal.SIGKILL  # heard from the fork server, as Popen would
    assert hitl.poll() is None  # only the one killed
    hitl.send_signal(signal.SIGTERM)
    assert hitl.wait(30) in (0, -signal.SIGTERM)


def test_each_child_has_the_environment_it_was_given(forks: ForkServer, tmp_path: Path) -> None:
    """Two services in one process read `BATON_HEALTH_PORTS` at start: the request's value, not
    the fork server's (which has none), reaches the child."""
    log = tmp_path / "together.log"
    argv = [sys.executable, "-m", "baton_cli", "serve", "planner", "hitl"]
    env = {**os.environ, **UNREACHABLE, "BATON_HEALTH_PORTS": "not json"}
    child = forks.spawn("together", argv, env, log)
    assert child.wait(60) == 2
    assert "BATON_HEALTH_PORTS is not a JSON object" in log.read_text()


def test_the_fork_server_ends_with_its_supervisor(forks: ForkServer, tmp_path: Path) -> None:
    child, _ = serve(forks, tmp_path, "projector")
    assert forks.proc is not None
    forks.stop()  # the socket closes, as when the supervisor is killed
    assert forks.proc.returncode == 0
    assert child.poll() is None  # a running service is not taken with it
    child.kill()
    assert child.wait(30) == -signal.SIGKILL  # looked for by pid now that no one reports it


def test_a_dead_fork_server_is_started_again(forks: ForkServer, tmp_path: Path) -> None:
    first = forks.pid
    assert forks.proc is not None and first is not None
    os.kill(first, signal.SIGKILL)
    forks.proc.wait(30)
    child, _ = serve(forks, tmp_path, "projector")
    assert forks.pid != first and int(stat(child.pid)[1]) == forks.pid
    child.kill()
    assert child.wait(30) == -signal.SIGKILL


def wait_for(check: object, what: str, timeout: float = 30) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.1)
