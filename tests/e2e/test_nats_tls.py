"""NATS over TLS (``BATON_NATS_TLS=1``): `baton up` makes a private CA and a server certificate,
the embedded server requires TLS, every service connects with ``tls://`` verifying that CA, and
a client that speaks plain text, or does not trust the CA, is refused."""

from __future__ import annotations

import asyncio
import socket
import stat
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py
from urllib.parse import urlsplit

import nats
import pytest
from nats.errors import Error as NatsError
from nats.errors import NoServersError

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tls_engine(module_engine: Any) -> Engine:
    return module_engine({"BATON_NATS_TLS": "1"})


def test_an_execution_runs_with_every_service_on_tls(tls_engine: Engine) -> None:
    runtime = tls_engine.runtime()
    assert runtime["nats_url"].startswith("tls://")
    plan = {"steps": [{"id": "a", "tool": "mock.agent"}, {"id": "b", "tool": "mock.agent"}]}
    resp = tls_engine.http.post(f"{tls_engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    assert tls_engine.wait(resp.json()["id"])["status"] == "succeeded"
    # the operator's own client (the CLI) reads the CA from runtime.json too
    listed = tls_engine.cli("deadletters", "--from-bus")
    assert listed.returncode == 0, listed.stderr


def test_the_ca_and_keys_are_private_files_and_the_server_requires_tls(tls_engine: Engine) -> None:
    folder = tls_engine.data_dir / "nats" / "tls"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE((folder / key).stat().st_mode) == 0o600
    conf = (tls_engine.data_dir / "nats" / "nats-server.conf").read_text()
    assert str(folder / "server.pem") in conf and str(folder / "server.key") in conf


def test_a_plain_text_client_is_refused(tls_engine: Engine) -> None:
    url = urlsplit(tls_engine.runtime()["nats_url"])
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        info = raw.recv(4096)
        assert b'"tls_required":true' in info.replace(b" ", b"")
        seed = tls_engine.nats()["nkeys_seed"]  # a real key does not help without TLS
        assert seed
        raw.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        answer = _read_until_closed(raw)
    assert b"PONG" not in answer
    assert b"TLS Required" in answer or answer == b"", answer


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_engine: Engine) -> None:
    args = tls_engine.nats()
    args.pop("tls")

    async def attempt() -> str:
        try:
            nc = await nats.connect(**args, allow_reconnect=False, max_reconnect_attempts=0)
        except (NatsError, NoServersError, OSError) as exc:
            return f"refused: {exc!r}"
        await nc.close()
        return "connected"

    assert asyncio.run(attempt()).startswith("refused")


def _read_until_closed(raw: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := raw.recv(4096):
            got += chunk
            if b"PONG" in got or b"-ERR" in got:
                break
    except (ConnectionResetError, TimeoutError):
        pass
    return got
