"""`make run` as a newcomer meets it: `baton up --demo` in a terminal, then Ctrl-C.

A terminal's Ctrl-C sends SIGINT to the whole foreground process group, so the test starts
`baton up` in a session of its own and signals that group, as the terminal would."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pytest
from baton_common.embedded import free_port

pytestmark = pytest.mark.e2e

BATON = str(Path(sys.executable).parent / "baton")

# What a service logs when its servers go away under it, or when it dies badly.
NOISE = re.compile(
    r"traceback|reconnect|disconnected|connection refused|terminating connection|"
    r"server closed the connection|\"level\": \"(error|critical)\"",
    re.IGNORECASE,
)


def _up_demo(data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.pop("XDG_RUNTIME_DIR", None)  # as on a fresh machine's root shell: nothing may warn
    env.update(
        BATON_DATA_DIR=str(data_dir),
        BATON_HTTP_PORT=str(free_port()),
        OTEL_SDK_DISABLED="true",
        BATON_API_TOKEN=secrets.token_urlsafe(24),
    )
    out = open(data_dir / "up.log", "wb")
    proc = subprocess.Popen(
        [BATON, "up", "--demo"], env=env, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the "terminal" below signals it
    )  # fmt: skip
    out.close()
    return proc


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = path.read_text(errors="replace")
        if text in seen:
            return seen
        assert proc.poll() is None, f"baton up exited ({proc.returncode}): {seen[-3000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {text!r} after {timeout}s: {path.read_text()[-3000:]}")


def _last_service_line(log: Path) -> datetime:
    last = json.loads(log.read_text().splitlines()[-1])
    return datetime.fromisoformat(last["time"])


def _nats_shutdown(data_dir: Path) -> datetime:
    for line in (data_dir / "nats" / "nats-server.log").read_text().splitlines():
        if "Initiating Shutdown" in line or "Initiating JetStream Shutdown" in line:
            stamp = " ".join(line.split()[1:3])  # [pid] 2026/12/07 08:03:49.523733 [INF] …
            return datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").astimezone()
    raise AssertionError("nats-server logged no shutdown")


def _postgres_shutdown(data_dir: Path) -> datetime:
    for line in (data_dir / "postgres" / "postgres.log").read_text().splitlines():
        if "shutdown request" in line:  # 2026-12-07 08:03:48.428 UTC [pid] LOG:  received fast…
            return datetime.fromisoformat(line[:23] + "+00:00")
    raise AssertionError("PostgreSQL logged no shutdown request")


def test_the_demo_prints_slots_as_a_table_and_ctrl_c_stops_services_then_servers() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="baton-e2e-first-run-"))
    data_dir.chmod(0o755)
    proc = _up_demo(data_dir)
    try:
        shown = _wait_for(data_dir / "up.log", "Ctrl-C stops the engine", proc, timeout=300)
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        assert proc.wait(90) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = (data_dir / "up.log").read_text()
    assert "Warning" not in output, output  # RuntimeDirWarning and its like
    assert output.rstrip().endswith("Stopped."), output[-2000:]
    slots = shown.split("\nslots:\n", 1)[1]
    assert slots.splitlines()[0].split() == ["start", "end", "score", "reason"], slots
    assert '"start"' not in slots.split("\n\n")[0]  # a table, not JSON

    logs = sorted((data_dir / "logs").glob("*.log"))
    assert len(logs) >= 8
    noise = [f"{log.name}: {ln[:300]}" for log in logs for ln in log.read_text().splitlines()
             if NOISE.search(ln)]  # fmt: skip
    assert not noise, noise
    services_done = max(_last_service_line(log) for log in logs)
    assert _nats_shutdown(data_dir) >= services_done  # the servers go last
    assert _postgres_shutdown(data_dir) >= services_done
