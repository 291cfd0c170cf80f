"""The whole engine as a user runs it: `baton up` in a subprocess, private servers included."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from baton_common.embedded import free_port
from baton_common.testing import stop, wait_ready

BATON = str(Path(sys.executable).parent / "baton")
LLM_PRICES = json.dumps({"offline-extractive": {"input": 0.5, "output": 2.0}})


@dataclass
class Engine:
    url: str
    data_dir: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    token: str = ""

    @functools.cached_property
    def http(self) -> httpx.Client:
        """A client that calls as the default workspace's owner."""
        return httpx.Client(headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def workspace(self, role: str = "owner", prefix: str = "w") -> tuple[str, httpx.Client]:
        """A new workspace (made by the installation's owner) and a client with a key of
        ``role`` in it."""
        made = self.http.post(
            f"{self.url}/v1/workspaces", json={"name": f"{prefix} {secrets.token_hex(3)}"}
        )
        assert made.status_code == 201, made.text
        ws = made.json()["id"]
        key = self.http.post(
            f"{self.url}/v1/workspaces/{ws}/keys", json={"role": role, "name": prefix}
        ).json()["key"]
        return ws, httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def signin_url(self, path: str = "/") -> str:
        """A one-time dashboard sign-in link (``?code=…``) to ``path``, as the owner."""
        made = self.http.post(f"{self.url}/v1/signin-codes")
        assert made.status_code == 201, made.text
        sep = "&" if "?" in path else "?"
        return f"{self.url}{path}{sep}code={made.json()['code']}"

    def runtime(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "runtime.json").read_text()))

    def nats(self, role: str = "admin") -> dict[str, Any]:
        """``nats.connect`` arguments that join this engine's bus as ``role`` (its key)."""
        seed = self.data_dir / "nats" / "auth" / f"{role}.nk"
        args: dict[str, Any] = {"servers": self.runtime()["nats_url"], "nkeys_seed": str(seed)}
        if ca := self.runtime().get("nats_tls_ca"):  # an engine with BATON_NATS_TLS=1
            import ssl

            args["tls"] = ssl.create_default_context(cafile=ca)
        return args

    @contextlib.contextmanager
    def replica(self, service: str, **extra: str) -> Iterator[subprocess.Popen[bytes]]:
        """Another replica of ``service``: a process of its own on this engine's bus and
        database (its log in ``logs/<service>-2.log``), stopped with SIGTERM at the end."""
        info = self.runtime()
        env = {**self.env, "NATS_URL": info["nats_url"], "DATABASE_URL": info["database_url"]}
        with open(self.data_dir / "logs" / f"{service}-2.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "baton_cli", "serve", service],
                env={**env, **extra},
                stdout=log,
                stderr=log,
            )
            try:
                yield proc
            finally:
                stop(proc, 30)

    def cli(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [BATON, *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait(
        self,
        execution_id: str,
        timeout: float = 60,
        until: tuple[str, ...] = ("succeeded", "failed", "cancelled"),
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        view: dict[str, Any] = {}
        while time.monotonic() < deadline:
            resp = self.http.get(f"{self.url}/v1/executions/{execution_id}")
            if resp.status_code == 200:
                view = resp.json()
                if view["status"] in until:
                    return view
            time.sleep(0.05)
        raise AssertionError(
            f"execution {execution_id} still {view.get('status')} after {timeout}s"
        )


def key_client(key: str) -> httpx.Client:
    """A client that calls with the API key ``key``."""
    return httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)


class Workspace:
    """A fresh workspace of a test's own (its policy touches no other test), with keys made on
    ask."""

    def __init__(self, engine: Engine, label: str) -> None:
        self.engine = engine
        name = f"{label} {uuid.uuid4().hex[:6]}"
        made = engine.http.post(f"{engine.url}/v1/workspaces", json={"name": name})
        assert made.status_code == 201, made.text
        self.id: str = made.json()["id"]

    def key(self, role: str, **extra: Any) -> dict[str, Any]:
        """A new key of ``role`` (``extra``: its name, expiry, …): its id and secret."""
        made = self.engine.http.post(
            f"{self.engine.url}/v1/workspaces/{self.id}/keys", json={"role": role, **extra}
        )
        assert made.status_code == 201, made.text
        return dict(made.json())

    def client(self, role: str, **extra: Any) -> httpx.Client:
        return key_client(self.key(role, **extra)["key"])


def retried_agent(step_id: str, attempts: int, backoff_s: float, **fails: Any) -> dict[str, Any]:
    """A one-step plan: ``mock.agent`` failing as ``fails`` says (``fail_times=1``,
    ``failure_rate=1``), tried up to ``attempts`` times."""
    retry = {"max_attempts": attempts, "backoff_s": backoff_s}
    return {"steps": [{"id": step_id, "tool": "mock.agent", "input": fails, "retry": retry}]}


def import_ics(engine: Engine, calendar: str, ics: str) -> httpx.Response:
    """Import the iCalendar document ``ics`` into ``calendar``, as the owner."""
    url = f"{engine.url}/v1/calendars/{calendar}/ics"
    return engine.http.post(url, content=ics, headers={"Content-Type": "text/calendar"})


def start_engine(
    extra_env: dict[str, str] | None = None,
    data_dir: Path | None = None,
    up_args: tuple[str, ...] = (),
) -> Engine:
    """`baton up` in a subprocess on private servers and ports; ready when this returns.
    ``data_dir``: an existing data folder (a restart), else a new one; ``up_args``: more of
    `baton up`'s options (``--one-process``)."""
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="baton-e2e-"))
        data_dir.chmod(0o755)
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update(
        BATON_DATA_DIR=str(data_dir),
        BATON_HTTP_PORT=str(port),
        BATON_ACK_WAIT="3",
        OTEL_SDK_DISABLED="true",
        BATON_URL=f"http://127.0.0.1:{port}",
        BATON_API_TOKEN=token,
        # Tests run their HTTP, webhook and CalDAV servers on 127.0.0.1: allowed on purpose
        # (the egress guard refuses loopback otherwise); test_attack_egress.py overrides it.
        BATON_EGRESS_ALLOW="127.0.0.1",
        # The MCP tests' stdio servers are Python scripts: the one program they may start.
        BATON_MCP_COMMANDS=sys.executable,
        # A price for the offline model, so LLM cost figures have something to price.
        BATON_LLM_PRICES=LLM_PRICES,
    )
    env.update(extra_env or {})
    log = open(data_dir / "up.log", "wb")
    proc = subprocess.Popen([BATON, "up", *up_args], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child has its own handle
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        services_ready(data_dir, proc)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}: {(data_dir / 'up.log').read_text()[-2000:]}") from None
    return Engine(url, data_dir, env, proc, env["BATON_API_TOKEN"])  # extra_env's, if it set one


def services_ready(data_dir: Path, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Every service's health port answers, not only the gateway's: forked services start within
    a moment of each other, and the gateway (started last) may be ready before the executor has
    opened its port (a test reading the executor's metrics first was refused). Any answer will
    do (some tests start engines on purpose with a service that is not ready), but from that
    service: a port taken by another process since `baton up` picked it answered for a service
    that had died binding it (CI: 21 tests waited behind an executor that never served). The
    ports are read again each time: a service started again gets a new one."""
    deadline = time.monotonic() + timeout
    while True:
        ports = json.loads((data_dir / "runtime.json").read_text())["health_ports"]
        waiting = {name: port for name, port in ports.items() if not _answers_as(name, port)}
        if not waiting:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no answer from these services on their health ports: {waiting}")
        time.sleep(0.2)


def _answers_as(name: str, port: int) -> bool:
    """Whether the process on ``port`` answers ``/readyz`` as service ``name`` (ready or not)."""
    try:
        body = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return isinstance(body, dict) and body.get("service") == name.partition("#")[0]


def stop_engine(engine: Engine) -> None:
    stop(engine.proc)
    refused = bus_refusals(engine)
    assert not refused, f"the bus refused what a service needs (busauth.GRANTS): {refused[:5]}"


def bus_refusals(engine: Engine) -> list[str]:
    """Every publish or subscription the server refused a service: each e2e run checks the
    permission table against what the services really do."""
    return [
        f"{log.name}: {line[:300]}"
        for log in (engine.data_dir / "logs").glob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if "permissions violation" in line.lower()
    ]


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    running = start_engine()
    yield running
    stop_engine(running)


def _engines() -> Iterator[Any]:
    """A starter of engines with their own environment; each is stopped at the end."""
    started: list[Engine] = []

    def start(extra_env: dict[str, str] | None = None, data_dir: Path | None = None) -> Engine:
        started.append(start_engine(extra_env, data_dir))
        return started[-1]

    yield start
    for running in started:
        stop_engine(running)


@pytest.fixture(scope="module")
def module_engine() -> Iterator[Any]:
    """``module_engine(env)``: like ``own_engine``, shared by the tests of one module."""
    yield from _engines()


@pytest.fixture
def own_engine() -> Iterator[Any]:
    """``own_engine(env)``: a separate engine with its own environment, stopped after the test
    (for a test that needs settings the shared one does not have, e.g. span export)."""
    yield from _engines()
