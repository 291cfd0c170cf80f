"""`baton up`'s Ctrl-C: at any moment it stops the engine, and a second one does not cut the
stop short. The engine is a fake here (the e2e test in tests/e2e/test_first_run.py runs the
real one); the signals are real, sent to this process."""

from __future__ import annotations

import argparse
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from baton_cli import main, up


class FakeEngine:
    """Records what the supervisor asks of it, in order."""

    def __init__(self, port: int, at_ready: Callable[[], None], at_supervise: Callable[[], None]):
        self.url, self.data_dir = f"http://127.0.0.1:{port}", Path(".")
        self.at_ready, self.at_supervise = at_ready, at_supervise
        self.calls: list[str] = []

    def start(self) -> None:
        self.calls.append("start")

    def wait_ready(self) -> None:
        self.at_ready()

    def owner_key(self) -> str:
        return "bk_test"

    @property
    def owner_key_path(self) -> Path:
        return Path("owner.key")

    def supervise(self) -> None:
        self.calls.append("supervise")
        self.at_supervise()

    def stop(self) -> None:
        self.calls.append("stop")
        ctrl_c()  # pressed again while stopping: ignored
        self.calls.append("stopped")


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def nothing() -> None:
    pass


@pytest.fixture(autouse=True)
def _handlers_back() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _engine(
    monkeypatch: pytest.MonkeyPatch, at_ready: Callable[[], None], at_supervise: Callable[[], None]
) -> FakeEngine:
    engine = FakeEngine(8123, at_ready, at_supervise)
    monkeypatch.setattr(up, "Engine", lambda data_dir, port, **_: engine)
    monkeypatch.setattr(main, "_dashboard_link", lambda engine: engine.url)
    return engine


ARGS = argparse.Namespace(
    port=8123, demo=False, exit_after_demo=False, one_process=False, replicas=None
)


def test_ctrl_c_while_the_engine_starts_stops_it_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, at_ready=ctrl_c, at_supervise=nothing)
    with pytest.raises(KeyboardInterrupt):  # main() turns it into exit code 130
        main.cmd_up(ARGS)
    assert engine.calls == ["start", "stop", "stopped"]


def test_ctrl_c_while_it_runs_ends_the_supervision_then_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = _engine(monkeypatch, at_ready=nothing, at_supervise=ctrl_c)
    assert main.cmd_up(ARGS) == 0
    assert engine.calls == ["start", "supervise", "stop", "stopped"]


class Exited:
    """A child process that ended with ``code``."""

    pid = 4242

    def __init__(self, code: int) -> None:
        self.code = code

    def poll(self) -> int:
        return self.code


def test_a_service_started_again_gets_a_health_port_free_now(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A service binds its health port at the end of its start (tens of seconds in on a busy
    machine): one that died binding it (another process took the port since) long after it
    started must not be given the same port again."""
    engine = up.Engine(tmp_path, 8123, log=lambda _line: None)
    engine.health_ports = {"executor": 40001}
    engine.children["executor"] = up.Child("executor", Exited(1), started=0.0)  # type: ignore[arg-type]
    spawned: list[str] = []
    monkeypatch.setattr(engine, "_spawn", lambda name, restarts=0: spawned.append(name))
    monkeypatch.setattr(engine, "_write_runtime", lambda: None)
    monkeypatch.setattr(up.time, "sleep", lambda _s: None)
    engine.supervise()
    assert spawned == ["executor"]
    assert "executor" not in engine.health_ports  # picked afresh by the next _child_env
