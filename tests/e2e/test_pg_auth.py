"""Regressions (issue 26) against the engine as processes: the embedded PostgreSQL let anything
on the machine in as its superuser (``trust``), and the installation token ``BATON_API_TOKEN``
could be neither revoked nor rotated. Now the database asks every connection for a password kept
0600 in the data folder (an older trust cluster is migrated), and the token is a key like any."""

from __future__ import annotations

import secrets
import signal
import stat
from pathlib import Path
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import httpx
import psycopg
import pytest
from baton_common.testing import trust_cluster
from psycopg.conninfo import conninfo_to_dict

pytestmark = pytest.mark.e2e


def _whoami(engine: Engine, key: str) -> httpx.Response:
    return httpx.get(
        f"{engine.url}/v1/whoami", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _stop(engine: Engine) -> None:
    engine.proc.send_signal(signal.SIGTERM)
    engine.proc.wait(60)


def _database_is_guarded(engine: Engine) -> str:
    """The engine's PostgreSQL refuses a connection without the password and takes one with
    it; the password is 0600 and shows in no log, command line or printed output."""
    url = engine.runtime()["database_url"]
    params = conninfo_to_dict(url)
    password = str(params["password"])
    bare = f"postgresql://postgres@127.0.0.1:{params['port']}/postgres"
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(bare, connect_timeout=5).close()
    with psycopg.connect(url, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    password_file = engine.data_dir / "postgres" / "password"
    assert password_file.read_text().strip() == password
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((engine.data_dir / "runtime.json").stat().st_mode) == 0o600
    printed = [engine.data_dir / "up.log", *sorted((engine.data_dir / "logs").glob("*.log"))]
    assert all(password not in p.read_text(errors="replace") for p in printed)
    assert password not in (engine.data_dir / "postgres" / "postgres.log").read_text()
    assert not any(password in _cmdline(pid) for pid in _pids(engine))
    return password


def _pids(engine: Engine) -> list[int]:
    info: dict[str, Any] = engine.runtime()
    return [engine.proc.pid, *info["pids"].values(), *info["servers"].values()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_the_database_wants_its_password_and_the_token_rotates_and_revokes(
    own_engine: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "baton"
    data_dir.mkdir()
    tmp_path.chmod(0o755)
    data_dir.chmod(0o755)
    assert trust_cluster(data_dir / "postgres").trusting()  # as an older version left it
    first, second = secrets.token_hex(16), secrets.token_hex(16)

    # An older version's trust cluster: migrated at start; the first token works.
    engine = own_engine({"BATON_API_TOKEN": first}, data_dir)
    password = _database_is_guarded(engine)
    assert _whoami(engine, first).json()["role"] == "owner"
    owner_key = (data_dir / "owner.key").read_text().strip()
    _stop(engine)

    # The same data folder again, with a new token: the database keeps its password, the old
    # token is refused, the new one works, and so does the bootstrap owner key.
    engine = own_engine({"BATON_API_TOKEN": second}, data_dir)
    assert _database_is_guarded(engine) == password
    refused = _whoami(engine, first)
    assert refused.status_code == 401, refused.text
    assert _whoami(engine, second).json()["role"] == "owner"
    assert _whoami(engine, owner_key).status_code == 200

    # Revoked like any key (`baton keys revoke api-token`): refused at once.
    done = engine.cli("keys", "revoke", "api-token", "--reason", "rotating")
    assert done.returncode == 0, done.stderr
    revoked = _whoami(engine, second)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"], revoked.text
    listed = engine.cli("keys", "list", env={"BATON_API_KEY": owner_key})
    row = next(ln for ln in listed.stdout.splitlines() if "api-token" in ln)
    assert "6261746f-6e00-4000-8000-0000746f6b65" in row and "owner" in row  # its fixed id
