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
    # Its first log line comes after it made itself its own process (session, title): the
    # fork server answers at the fork, before that.
    wait_for(
        lambda: log.exists() and '"service": "projector"' in log.read_text(),
        "the projector's own log",
    )
    assert int(stat(projector.pid)[1]) == forks.pid  # forked, not started afresh
    assert int(stat(projector.pid)[3]) == projector.pid  # the leader of its own session
    cmdline = Path(f"/proc/{projector.pid}/cmdline").read_bytes().decode()
    assert cmdline.rstrip("\0") == f"{sys.executable} -m baton_cli serve projector"
    assert Path(f"/proc/{projector.pid}/comm").read_text().strip().startswith("python")

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


def sigblk(pid: int) -> int:
    """The blocked-signal mask of ``pid``'s main thread (/proc/<pid>/status SigBlk)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk")


def test_children_block_no_signal_whatever_mask_the_supervisor_had(tmp_path: Path) -> None:
    """A supervisor started with SIGTERM and SIGCHLD blocked (its own parent's mask, inherited
    through exec) hands that mask to its fork server, and the fork server to every service:
    a service that cannot hear SIGTERM ignores the engine's stop, and a fork server that
    cannot hear SIGCHLD reports no exit."""
    blocked = {signal.SIGTERM, signal.SIGCHLD}
    held = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        server = ForkServer(tmp_path / "fork-server.log", dict(os.environ))
        server.start()  # started afresh: an exec keeps the mask
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    try:
        child, log = serve(server, tmp_path, "projector")
        wait_for(lambda: log.exists() and '"service"' in log.read_text(), "the projector's log")
        assert server.pid is not None and sigblk(server.pid) == 0
        assert sigblk(child.pid) == 0
        child.send_signal(signal.SIGTERM)
        assert child.wait(30) == -signal.SIGTERM  # stopped, and its exit heard
    finally:
        server.stop()


def test_an_exit_read_with_a_fork_answer_is_not_left_unread() -> None:
    """The fork server's answer to a fork and the exit of another child can arrive in one
    read: the exit must be heard without waiting for a later message."""
    import socket

    ours, theirs = socket.socketpair()
    server = ForkServer(Path("unused.log"), {})
    server.sock, server.proc = ours, Forked(None, os.getpid())  # alive: this process
    theirs.sendall(b'{"pid": 101, "name": "a"}\n{"exited": 202, "code": 1}\n')
    try:
        child = server.spawn("a", ["a"], {}, Path("a.log"))
        assert child.pid == 101
        assert server.exit_code(202, server.generation) == 1  # nothing more arrives
    finally:
        ours.close()
        theirs.close()


def test_a_service_that_cannot_start_says_where_it_waits_and_exits(
    forks: ForkServer, tmp_path: Path
) -> None:
    """Its bus never answers: past BATON_START_TIMEOUT it names the step and exits non-zero
    (the supervisor starts it again) instead of waiting for ever."""
    from baton_common.startwatch import NOT_READY

    child, log = serve(forks, tmp_path, "projector", BATON_START_TIMEOUT="3")
    assert child.wait(60) == NOT_READY
    lines = [line for line in log.read_text().splitlines() if "did not become ready" in line]
    assert lines, log.read_text()[-2000:]
    assert "run_projector (main.py:" in lines[0] and "> connect (bus.py:" in lines[0], lines[0]
