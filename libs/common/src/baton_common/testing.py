"""Pytest fixtures that find real servers: a URL from the environment, else a container when a
Docker engine answers, else local binaries on free ports. Every test gets its own stream,
subject root and database schema, so nothing leaks between tests or runs."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from baton_common.embedded import NatsServer, PostgresServer
from baton_common.settings import Settings


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


@pytest.fixture(scope="session")
def nats_url(servers_dir: Path) -> Iterator[str]:
    if url := os.environ.get("BATON_TEST_NATS_URL"):
        yield url
        return
    if _docker_available():
        from testcontainers.nats import NatsContainer

        with NatsContainer(image="nats:2.11").with_command("-js") as container:
            yield container.nats_uri()
        return
    server = NatsServer(servers_dir / "nats").start()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def database_url(servers_dir: Path) -> Iterator[str]:
    if url := os.environ.get("BATON_TEST_DATABASE_URL"):
        yield url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url()
        return
    server = PostgresServer(servers_dir / "pg", durable=False).start()
    yield server.url
    server.stop()


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
