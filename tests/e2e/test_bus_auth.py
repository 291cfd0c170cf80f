"""The bus authenticates every connection and holds each service to its own subjects: on the
engine as `baton up` starts it, a client without a key is refused, and the keys of a worker or
the gateway cannot publish what another service owns (busauth.GRANTS)."""

from __future__ import annotations

import asyncio
import json
import stat
import time
import uuid
from typing import Any
from typing import Any as Engine  # the fixture's type lives in conftest.py

import nats
import pytest
from nats.errors import Error as NatsError
from nats.errors import NoServersError
from nats.js.errors import NotFoundError

pytestmark = pytest.mark.e2e
CATALOGUE = "baton.system.tools.catalogue_changed"


class Client:
    """A connection as one role, recording the server's asynchronous errors (a publish the
    server refuses is dropped and reported as ``Permissions Violation``)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc: Any = None

    async def connect(self, engine: Engine, role: str) -> Client:
        async def on_error(exc: Exception) -> None:
            self.errors.append(str(exc))

        self.nc = await nats.connect(**engine.nats(role), error_cb=on_error, allow_reconnect=False)
        return self

    async def refused(self, subject: str, timeout: float = 5.0) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if any("permissions violation" in e.lower() and subject in e for e in self.errors):
                return True
            await asyncio.sleep(0.05)
        return False


async def _watch(engine: Engine, subject: str) -> tuple[Any, list[bytes]]:
    """The operator's connection, collecting what reaches ``subject``."""
    seen: list[bytes] = []
    nc = await nats.connect(**engine.nats())

    async def on(msg: Any) -> None:
        seen.append(msg.data)

    await nc.subscribe(subject, cb=on)
    await nc.flush()
    return nc, seen


async def _last_on(nc: Any, subject: str, timeout: float = 60.0) -> Any:
    """The stream's last message on ``subject``, waiting for one: the executor announces its
    first catalogue after its scan at start, which may end after the engine says it is up."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await nc.jetstream().get_last_msg("BATON_EVENTS", subject)
        except NotFoundError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_a_client_without_credentials_or_with_a_key_the_server_does_not_know_is_refused(
    engine: Engine, tmp_path: Any
) -> None:
    url = engine.runtime()["nats_url"]

    async def attempt(**kwargs: Any) -> str:
        try:
            nc = await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0, **kwargs)
        except (NatsError, NoServersError, OSError) as exc:
            return f"refused: {exc!r}"
        await nc.close()
        return "connected"

    from baton_common.busauth import new_seed

    stranger = tmp_path / "stranger.nk"
    stranger.write_text(new_seed())
    assert asyncio.run(attempt()).startswith("refused")
    assert asyncio.run(attempt(nkeys_seed=str(stranger))).startswith("refused")
    assert asyncio.run(attempt(nkeys_seed=engine.nats()["nkeys_seed"])) == "connected"


def test_the_keys_are_private_files_in_the_data_folder(engine: Engine) -> None:
    folder = engine.data_dir / "nats" / "auth"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    seeds = sorted(p.name for p in folder.glob("*.nk"))
    assert {"admin.nk", "gateway.nk", "worker.nk", "executor.nk", "hitl.nk"} <= set(seeds)
    assert all(stat.S_IMODE((folder / s).stat().st_mode) == 0o600 for s in seeds)
    conf = (folder / "auth.conf").read_text()
    for seed in seeds:  # the server holds public keys only
        assert (folder / seed).read_text().strip() not in conf


def test_a_worker_cannot_announce_tools_or_decide_an_approval(engine: Engine) -> None:
    async def scenario() -> None:
        watcher, seen = await _watch(engine, "baton_rpc.hitl.>")
        worker = await Client().connect(engine, "worker")
        forged = {
            "type": "tools.catalogue_changed",
            "tools": [{"name": "x", "module": "os:system"}],
        }
        await worker.nc.publish(CATALOGUE, json.dumps(forged).encode())
        assert await worker.refused(CATALOGUE), worker.errors
        decision = {"approval_id": str(uuid.uuid4()), "decision": "approve"}
        await worker.nc.publish("baton_rpc.hitl.decide", json.dumps(decision).encode())
        assert await worker.refused("baton_rpc.hitl.decide"), worker.errors
        await watcher.flush()
        assert seen == []  # nothing reached the decision subject
        last = await _last_on(watcher, CATALOGUE)
        assert b"os:system" not in (last.data or b"")  # the executor's catalogue stands
        await worker.nc.close()
        await watcher.close()

    asyncio.run(scenario())


def test_the_gateway_cannot_report_a_step_outcome(engine: Engine) -> None:
    subject = f"baton.default.execution.step_succeeded.{uuid.uuid4()}"

    async def scenario() -> None:
        watcher, seen = await _watch(engine, "baton.default.execution.>")
        gateway = await Client().connect(engine, "gateway")
        await gateway.nc.publish(subject, b"{}")
        assert await gateway.refused(subject), gateway.errors
        await watcher.flush()
        assert seen == []
        # what the gateway does own, it may still publish
        assert not gateway.errors[1:]
        await gateway.nc.close()
        await watcher.close()

    asyncio.run(scenario())


def test_the_engine_works_with_every_service_on_its_own_key(engine: Engine) -> None:
    plan = {"steps": [{"id": "a", "tool": "mock.agent"}, {"id": "b", "tool": "mock.agent"}]}
    resp = engine.http.post(f"{engine.url}/v1/executions", json={"plan": plan})
    assert resp.status_code == 202, resp.text
    assert engine.wait(resp.json()["id"])["status"] == "succeeded"
    refused = [  # what the server refused a service (the engine's stop checks this too)
        line
        for log in (engine.data_dir / "logs").glob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if "permissions violation" in line.lower()
    ]
    assert refused == []


def test_a_forged_catalogue_is_ignored_with_a_logged_reason(engine: Engine) -> None:
    from baton_common import contracts as c
    from baton_common.discovery import CATALOGUE_ID

    forged = c.CatalogueChanged(
        workspace_id=c.SYSTEM_WORKSPACE,
        aggregate_id=CATALOGUE_ID,
        digest="forged",
        tools=[
            {
                "spec": {"name": "t.evil", "description": "d", "input_schema": {}},
                "origin": "agents:evil.yaml",
                "implementation": {"python": "os:getcwd"},
            }
        ],
        scanned_by="attacker",
    )

    async def publish() -> None:  # even the operator's key: only the signature makes it real
        nc = await nats.connect(**engine.nats())
        await nc.jetstream().publish(CATALOGUE, forged.to_json())
        await nc.close()

    asyncio.run(publish())
    logs = engine.data_dir / "logs"
    deadline = time.monotonic() + 20
    reason = f"tool catalogue {forged.event_id} ignored: unsigned"
    while not all(reason in (logs / f"{s}.log").read_text() for s in ("worker", "gateway")):
        assert time.monotonic() < deadline, "no process logged the forgery"
        time.sleep(0.2)
    tools = engine.http.get(f"{engine.url}/v1/tools").json()
    assert "t.evil" not in json.dumps(tools)


def _logged(engine: Engine, service: str, text: str, timeout: float = 20) -> None:
    log = engine.data_dir / "logs" / f"{service}.log"
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{service} did not log {text!r}"
        time.sleep(0.2)


def test_forged_control_messages_are_ignored_with_a_logged_reason(engine: Engine) -> None:
    """Requests outside the event stream carry the control key's signature: the gateway's real
    NKey (which may publish these subjects) is not enough to forge a decision, a tool refresh
    or a plan handed to the executor, and a signature made with another key is refused too."""
    from baton_common import contracts as c
    from baton_common.control import signed_headers

    key = bytes.fromhex((engine.data_dir / "nats" / "auth" / "control.key").read_text().strip())
    forged_id = uuid.uuid4()
    decision = json.dumps({"approval_id": str(uuid.uuid4()), "decision": "approve"}).encode()
    requested = c.ExecutionRequested(
        workspace_id="default",
        aggregate_id=forged_id,
        request="forged",
        plan={"steps": [{"id": "a", "tool": "mock.agent"}]},
    )

    async def scenario() -> None:
        gateway = await Client().connect(engine, "gateway")
        nc = gateway.nc
        for subject, body, headers in (
            ("baton_rpc.hitl.decide", decision, None),
            (
                "baton_rpc.hitl.decide",
                decision,
                signed_headers(b"w" * 32, "baton_rpc.hitl.decide", decision),
            ),
            ("baton_rpc.tools.refresh", b"{}", None),
        ):
            with pytest.raises(NatsError):  # ignored: nobody answers
                await nc.request(subject, body, timeout=2, headers=headers)
        await nc.publish("baton_direct.executor", requested.to_json())
        # the same key with the installation's signature is answered (the planner's insights)
        ask = json.dumps({"workspace_id": "default"}).encode()
        signed = signed_headers(key, "baton_rpc.planner.insights", ask)
        answer = await nc.request("baton_rpc.planner.insights", ask, timeout=10, headers=signed)
        assert json.loads(answer.data)["status"] == 200
        assert gateway.errors == []  # the bus let all of it through: the signature refused it
        await nc.close()

    asyncio.run(scenario())
    _logged(engine, "hitl", "decision on baton_rpc.hitl.decide ignored: unsigned")
    _logged(engine, "hitl", "decision on baton_rpc.hitl.decide ignored: bad signature")
    _logged(engine, "executor", "tools refresh on baton_rpc.tools.refresh ignored: unsigned")
    _logged(engine, "executor", "direct hand-over on baton_direct.executor ignored: unsigned")
    resp = engine.http.get(f"{engine.url}/v1/executions/{forged_id}")
    assert resp.status_code == 404  # the forged plan never became an execution
