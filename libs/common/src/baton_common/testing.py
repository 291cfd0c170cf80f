"""The tests' pytest plugin (registered once, by the root ``conftest.py``).

Fixtures that find real servers: a URL from the environment, else a container when a Docker
engine answers, else local binaries on free ports. Every test gets its own stream, subject root
and database schema, so nothing leaks between tests or runs. And what the services' integration
tests share: waiting for a condition (``until``), watching the events on the test's stream
(``watch``), and the environment of a service started as a process (``service_env``)."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import httpx
import psycopg
import pytest

from baton_common.contracts import decode
from baton_common.embedded import NatsServer, PostgresServer, postgres_bindir
from baton_common.events import Event
from baton_common.fakemodels import (
    FakeGemini,
    FakeOpenAI,
    LocalHandler,
    fake_openai_server,
)
from baton_common.fakemodels import serving as serving  # the tests' import of it
from baton_common.settings import Settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--clock-ahead-days",
        type=int,
        default=int(os.environ.get("BATON_TEST_CLOCK_AHEAD_DAYS") or 0),
        help="run the tests with this process's wall clock moved this many days ahead "
        "(time-machine), so a test bound to today's date fails now instead of on that day",
    )


def pytest_configure(config: pytest.Config) -> None:
    days = config.getoption("--clock-ahead-days")
    if not days:
        return
    import time_machine  # a dev dependency: only this guard needs it

    # ``tick=True``: the clock keeps running from the shifted instant. Only this process moves
    # (monotonic clocks stay as they are); servers and engines started as processes keep the
    # real date, which is why the guard covers the unit and integration tests.
    shifted = datetime.now(UTC) + timedelta(days=days)
    traveller = time_machine.travel(shifted, tick=True)
    traveller.start()
    config.add_cleanup(traveller.stop)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--clock-ahead-days"):
        return
    skip = pytest.mark.skip(reason="real_clock: a server's clock was not moved with this one")
    for item in items:
        if "real_clock" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str | None:
    days = config.getoption("--clock-ahead-days")
    return f"clock moved {days} days ahead (time-machine)" if days else None


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def servers_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="baton-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _server_url(
    env_var: str, in_container: Callable[[], Iterator[str]], local: Callable[[], Any]
) -> Iterator[str]:
    """A test server's URL, found in this order: ``env_var``; a container when a Docker engine
    answers; a local binary's server (``local()``, started here and stopped after)."""
    if url := os.environ.get(env_var):
        yield url
    elif _docker_available():
        yield from in_container()
    else:
        server = local().start()
        yield server.url
        server.stop()


@pytest.fixture(scope="session")
def nats_url(servers_dir: Path) -> Iterator[str]:
    yield from _server_url(
        "BATON_TEST_NATS_URL", _nats_container, lambda: NatsServer(servers_dir / "nats")
    )


def _nats_container() -> Iterator[str]:
    from testcontainers.nats import NatsContainer

    with NatsContainer(image="nats:2.11").with_command("-js") as container:
        yield container.nats_uri()


def trust_cluster(root: Path) -> PostgresServer:
    """A cluster as Baton made it before it had passwords (``initdb -A trust``), not started:
    for tests of the migration."""
    old = PostgresServer(root)
    old._prepare_root()
    args = [str(postgres_bindir() / "initdb"), "-D", str(old.pgdata), "-U", "postgres"]
    args += ["-A", "trust", "-E", "UTF8", "--no-sync"]
    made = subprocess.run(args, capture_output=True, **old.user_kw)  # type: ignore[call-overload]
    assert made.returncode == 0, made.stderr
    return old


@pytest.fixture(scope="session")
def database_url(servers_dir: Path) -> Iterator[str]:
    yield from _server_url(
        "BATON_TEST_DATABASE_URL",
        _postgres_container,
        lambda: PostgresServer(servers_dir / "pg", durable=False),
    )


def _postgres_container() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16", driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture
def settings(nats_url: str, database_url: str) -> Settings:
    """Settings naming a private stream, subject root and schema for this one test."""
    tag = uuid.uuid4().hex[:10]
    return Settings(
        NATS_URL=nats_url,
        DATABASE_URL=database_url,
        BATON_DB_SCHEMA=f"t_{tag}",
        BATON_SUBJECT_ROOT=f"t{tag}",
        BATON_STREAM=f"T_{tag.upper()}",
        BATON_ACK_WAIT=2.0,
    )


@pytest.fixture
def schema(database_url: str) -> Iterator[str]:
    """A schema of this one test's own, dropped with all in it after the test."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[object]:
    from baton_common.bus import Bus

    b = await Bus.connect(settings, "test")
    yield b
    for stream in (settings.stream, settings.dlq_stream):
        try:
            await b.js.delete_stream(stream)
        except Exception:
            pass
    await b.close()


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a service (or any Baton process) started as a child of a test: this
    test's servers, stream, subject root and schema, and ``extra`` on top."""
    return {
        **os.environ,
        "NATS_URL": settings.nats_url,
        "DATABASE_URL": settings.database_url,
        "BATON_DB_SCHEMA": settings.db_schema,
        "BATON_SUBJECT_ROOT": settings.subject_root,
        "BATON_STREAM": settings.stream,
        **extra,
    }


# --- waiting for what a service does --------------------------------------------------------------


async def until(
    predicate: Callable[[], bool | Awaitable[bool]], what: str = "condition", timeout: float = 30
) -> None:
    """Poll ``predicate`` (plain or async) until it holds; an AssertionError naming ``what``
    after ``timeout`` seconds. Tests wait for conditions, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = predicate()
        if await held if inspect.isawaitable(held) else held:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def wait_until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something true, and return that; an AssertionError
    naming ``what`` after ``timeout`` seconds (for tests that drive an engine synchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g}s")


class Watch:
    """Every event on a subject of the test's stream, as it arrives (an ordered consumer from the
    stream's start). Subclass it for a test's own questions."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def start(self, bus: Any, subject: str) -> None:
        async def on(msg: Any) -> None:
            self.events.append(decode(msg.data))

        root = bus.settings.subject_root
        self.sub = await bus.js.subscribe(f"{root}.{subject}", cb=on, ordered_consumer=True)

    async def stop(self) -> None:
        await self.sub.unsubscribe()

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]

    def about(self, aggregate_id: UUID) -> list[Event]:
        return [e for e in self.events if e.aggregate_id == aggregate_id]


W = TypeVar("W", bound=Watch)


@pytest.fixture
async def watch(bus: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """``await watch("*.approval.>")`` (or ``watch(subject, MyWatch)``): a started ``Watch``,
    stopped after the test."""
    started: list[Watch] = []

    async def start(subject: str, kind: type[W] = Watch) -> W:  # type: ignore[assignment]
        watcher = kind()
        await watcher.start(bus, subject)
        started.append(watcher)
        return watcher

    yield start
    for watcher in started:
        await watcher.stop()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The spans this process finishes during the test (an in-memory exporter), as if a
    collector were configured: ``spans.get_finished_spans()``."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from baton_common import tracing

    monkeypatch.setenv("OTEL_SDK_DISABLED", "false")  # the tests' default: on for this one
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "exporting", lambda: True)
    monkeypatch.setattr(tracing, "tracer", lambda: provider.get_tracer("test"))
    return exporter


def gate_requested(
    tool_input: dict[str, Any],
    policy: dict[str, Any] | None = None,
    workspace: str = "acme",
    **fields: Any,
) -> Any:
    """A new execution's step ``deploy`` asking for an approval gate before it calls
    ``http.request`` with ``tool_input`` (as the executor sends it to the hitl service)."""
    from baton_common import contracts as c
    from baton_common.approvals import approval_id_for

    execution = uuid.uuid4()
    return c.StepApprovalRequested(
        aggregate_id=execution,
        aggregate_version=3,
        workspace_id=workspace,
        correlation_id=execution,
        step_id="deploy",
        approval_id=approval_id_for(execution, "deploy"),
        tool="http.request",
        input=tool_input,
        policy=policy or {},
        **fields,
    )


def parked_notice(execution_id: UUID, parked_type: str, size: int, reason: str, relay: str) -> Any:
    """The notice a relay commits when it parks an event the bus refuses (as
    ``Relay._park`` writes it), about an event of ``execution_id``."""
    from baton_common import contracts as c

    notice = c.parked_notice_id(str(uuid.uuid4()))
    return c.EventParked(
        event_id=notice,
        aggregate_id=notice,
        aggregate_version=1,
        correlation_id=execution_id,
        parked_event_id=uuid.uuid4(),
        parked_type=parked_type,
        position=7,
        size=size,
        reason=reason,
        relay=relay,
    )


class Pinged(Event):
    """Test-only event: something to consume."""

    TYPE = "test.pinged"
    n: int = 0


class Ponged(Event):
    """Test-only event: the effect of handling a ping."""

    TYPE = "test.ponged"
    n: int = 0


# --- local HTTP servers (subscribers, callees, fake APIs) ------------------------------------------


class Recorder(ThreadingHTTPServer):
    """A local HTTP server that records every request (``calls``: lower-cased headers, body)
    and answers it with ``reply`` (200 and ``{}`` unless a subclass says otherwise)."""

    daemon_threads = True

    def __init__(self, path: str = "/") -> None:
        super().__init__(("127.0.0.1", 0), _Recording)
        self.path = path
        self.calls: list[tuple[dict[str, str], bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{self.path}"

    def reply(self) -> tuple[int, bytes, dict[str, str]]:
        return 200, b"{}", {}


class _Recording(LocalHandler):
    server: Recorder

    def _any(self) -> None:
        body = self.body()
        self.server.calls.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.answer(*self.server.reply())

    do_GET = do_POST = do_PUT = do_DELETE = _any


@pytest.fixture
def loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outbound calls may reach 127.0.0.1, as an operator allows a local model server
    (``BATON_EGRESS_ALLOW``): the fakes of model APIs listen there, behind the egress guard."""
    monkeypatch.setenv("BATON_EGRESS_ALLOW", "127.0.0.1")


@pytest.fixture
def fake_gemini(loopback_allowed: None) -> Iterator[FakeGemini]:
    """A local Gemini REST API with scripted answers (``baton_common.fakemodels``)."""
    with FakeGemini().running() as server:
        yield server


@pytest.fixture
def fake_openai(loopback_allowed: None) -> Iterator[FakeOpenAI]:
    """A local OpenAI-compatible server with scripted answers (``baton_common.fakemodels``)."""
    with fake_openai_server() as server:
        yield server


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 90) -> None:
    """Wait until the engine at ``url`` answers ``/readyz``; a RuntimeError when ``proc`` (its
    ``baton up``) exits first, or after ``timeout`` seconds (``proc`` is then killed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("baton up exited")
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("baton up did not become ready")


def stop(proc: subprocess.Popen[Any], grace: float = 60) -> None:
    """Stop ``proc`` as an operator would (SIGTERM), killing it if it is not gone in ``grace``
    seconds."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()


def one_event_ics(*fields: str) -> str:
    """An iCalendar document with one event of ``fields`` ("UID:…", "DTSTART:…", …), its lines
    ended by CRLF as RFC 5545 says."""
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", "BEGIN:VEVENT"]
    return "\r\n".join([*head, *fields, "END:VEVENT", "END:VCALENDAR", ""])


def state_of(aggregate: Any) -> dict[str, Any]:
    """An aggregate's state, to compare one loaded through a snapshot with one folded from its
    whole history."""
    assert aggregate is not None
    return {k: v for k, v in vars(aggregate).items() if k != "pending"}
