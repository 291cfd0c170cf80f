"""The embedded PostgreSQL asks every connection for the superuser's password, kept 0600
beside the cluster; a cluster an older Baton made with ``trust`` is migrated on its next start."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from baton_common.embedded import PostgresServer
from baton_common.testing import trust_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    tmp_path.chmod(0o755)  # as root, the postgres user must reach the folder
    yield tmp_path / "postgres"


def _refused_without_password(server: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(server.public_url, connect_timeout=3).close()
    socket_url = f"postgresql://postgres@/postgres?host={server.root}&port={server.port}"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(socket_url, connect_timeout=3).close()


def _works(server: PostgresServer) -> None:
    with psycopg.connect(server.url, connect_timeout=3) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_a_new_cluster_wants_the_password_kept_0600(root: Path) -> None:
    server = PostgresServer(root, durable=False).start()
    try:
        _works(server)
        _refused_without_password(server)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(server.url.replace(server.password(), "wrong"), connect_timeout=3)
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
        assert server.password() not in server.public_url
        assert not server.trusting()
    finally:
        server.stop()
    again = PostgresServer(root, durable=False).start()  # the same folder, the same password
    try:
        assert again.password() == server.password()
        _works(again)
        _refused_without_password(again)
    finally:
        again.stop()


def test_a_trust_cluster_of_an_older_baton_is_given_a_password(root: Path) -> None:
    old = trust_cluster(root)
    assert old.trusting() and not old.password_file.exists()
    server = PostgresServer(root, durable=False).start()
    try:
        assert not server.trusting()
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        _works(server)
        _refused_without_password(server)
        log = (root / "postgres.log").read_text()
        assert server.password() not in log  # the password went as a SCRAM verifier only
    finally:
        server.stop()


def test_a_cluster_in_a_deep_folder_starts_on_tcp_alone(tmp_path: Path) -> None:
    """A socket's path may not pass 107 bytes: a project in a deep folder (a CI's temporary
    folder was enough) made PostgreSQL refuse to start. It starts without its socket there."""
    tmp_path.chmod(0o755)
    deep = tmp_path / ("d" * (120 - len(str(tmp_path))))
    deep.mkdir()
    deep.chmod(0o755)
    server = PostgresServer(deep / "postgres", durable=False)
    assert server.socket_dir == ""
    server.start()
    try:
        _works(server)
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(server.public_url, connect_timeout=3).close()
    finally:
        server.stop()
