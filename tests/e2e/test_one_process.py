"""`baton up --one-process`: every service as a task of one process, on the same bus subjects
and stores as when each is a process of its own. Every service answers its own readiness probe
(and `baton status` lists them); a webhook starts an execution whose steps run on the worker
(HTTP calls to a ledger) behind an approval gate; SIGTERM drains all of them and the engine
exits cleanly."""

from __future__ import annotations

import functools
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from baton_common.testing import serving

from tests.e2e.conftest import Engine, bus_refusals, start_engine
from tests.e2e.test_approvals import Ledger, decide, gate_of, post
from tests.e2e.test_webhooks import eventually, send, signed

pytestmark = pytest.mark.e2e

SERVICES = {"projector", "planner", "executor", "worker", "calendar", "hitl", "scheduler"}
SERVICES |= {"webhook", "gateway"}


def served_by(pid: int) -> list[list[str]]:
    """The command lines of ``pid``'s children that run `baton serve`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != pid:
                continue
            # split on spaces too: a forked service's command line is its process title
            argv = (stat.parent / "cmdline").read_bytes().decode().replace("\0", " ").split()
        except (OSError, ValueError, IndexError):
            continue
        if "serve" in argv:
            found.append(argv[argv.index("serve") + 1 :])
    return found


def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """A service's ``/readyz`` answer: (status, body), (0, {}) while nothing listens yet."""
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    except httpx.TransportError:
        return 0, {}
    return resp.status_code, resp.json()


def gated_endpoint(engine: Engine, ledger: Ledger) -> dict[str, Any]:
    """An unsigned webhook endpoint starting: before (worker) → gated (approval) → after."""
    plan = {
        "name": f"one-{uuid.uuid4().hex[:8]}",
        "steps": [
            {"id": "before", **post(ledger, "before")},
            {"id": "gated", **post(ledger, "gated"), "depends_on": ["before"],
             "requires_approval": True},
            {"id": "after", **post(ledger, "after"), "depends_on": ["gated"]},
        ],
    }  # fmt: skip
    body = {
        "name": plan["name"],
        "scheme": "none",
        "allow_unsigned": True,
        "action": {"plan": plan},
    }
    made = engine.http.post(f"{engine.url}/v1/webhooks/endpoints", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


def records(engine: Engine) -> list[dict[str, Any]]:
    """The one process's log records (JSON lines)."""
    lines = (engine.data_dir / "logs" / "engine.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_one_process_runs_a_gated_webhook_execution_and_stops_cleanly() -> None:
    engine = start_engine(up_args=("--one-process",))
    try:
        with serving(Ledger()) as ledger:
            run_gated_webhook(engine, ledger)
    finally:
        engine.proc.send_signal(signal.SIGTERM)
        code = engine.proc.wait(60)
    assert code == 0
    logged = records(engine)
    stopped = {r["service"] for r in logged if r["message"] == f"{r['service']} stopped"}
    assert stopped == SERVICES  # each drained, and its records say which service it is
    up_log = (engine.data_dir / "up.log").read_text()
    assert "exited (" not in up_log and "did not stop" not in up_log  # no restart, no kill
    assert not [r for r in logged if r["level"] == "error"], "errors in the one process's log"
    assert not bus_refusals(engine)  # each service connected with its own role's key


def run_gated_webhook(engine: Engine, ledger: Ledger) -> None:
    """One process serves every service, each ready on its own port; a webhook's execution
    runs its worker steps around an approval gate."""
    assert list(engine.runtime()["pids"]) == ["engine"]
    (argv,) = served_by(engine.proc.pid)  # one child process serves them all
    assert set(argv) == SERVICES
    ports = engine.runtime()["health_ports"]
    assert set(ports) == SERVICES - {"gateway"}  # the gateway's are on its HTTP port
    for name, port in ports.items():
        ready = eventually(functools.partial(readiness, port), lambda answer: answer[0] == 200)
        assert ready[1]["service"] == name
    status = engine.cli("status")  # what a person asks: every service, ready, in one process
    assert status.returncode == 0, status.stdout + status.stderr
    assert "one process" in status.stdout
    assert {line.split()[0] for line in status.stdout.splitlines()[1:]} == SERVICES
    endpoint = gated_endpoint(engine, ledger)
    body = json.dumps({"why": "one process"}).encode()
    resp = send(endpoint, body, signed("none", "", body, f"d-{uuid.uuid4()}"))
    assert resp.status_code == 202, resp.text
    eid = resp.json()["execution_id"]
    gate = gate_of(engine, eid)
    assert ledger.paths() == ["/before"]  # the gate holds the rest
    assert decide(engine.http, engine, gate, decision="approve").status_code == 200
    assert engine.wait(eid)["status"] == "succeeded"
    assert ledger.paths() == ["/before", "/gated", "/after"]
