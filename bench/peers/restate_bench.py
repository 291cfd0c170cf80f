"""Restate peer benchmark: a service of K no-op ``ctx.run`` steps behind a local restate-server.

    .bench/peers-venv/bin/python bench/peers/restate_bench.py --workload chain --k 5 --n 20

The server is the ``restate-server`` binary from the npm package ``@restatedev/restate-server``
(installed by setup_peers.sh under .bench/restate, never downloaded at run time), started and
owned by this process with its data in a fresh folder under .bench/ and its default
single-node configuration: every journal entry is appended to its replicated log, whose
log-server writes RocksDB with its WAL fsynced (``rocksdb-disable-wal-fsync = false``, read back
from the running configuration and printed as ``durability``). The service runs under hypercorn
(the SDK's documented server) in a child process; the client sends HTTP requests to the
server's ingress. --database-url is ignored.

Durable here means: Restate records the invocation and each ``ctx.run`` result in its log
before the handler is told the result, so a crash re-runs at most the open step.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common

HERE = Path(__file__).resolve().parent
SERVER = HERE.parent.parent / ".bench" / "restate" / "node_modules" / ".bin" / "restate-server"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds}s")


class Restate:
    """restate-server and the service's hypercorn, each a child process; stopped on exit."""

    def __init__(self) -> None:
        self.base = tempfile.mkdtemp(prefix="restate-", dir=_common.scratch_dir())
        self.ingress, self.admin, self.node, self.svc = (free_port() for _ in range(4))
        env = {
            **os.environ,
            "RESTATE_BASE_DIR": self.base,
            "RESTATE_LISTEN_MODE": "tcp",
            "RESTATE_BIND_ADDRESS": f"127.0.0.1:{self.node}",
            "RESTATE_ADVERTISED_ADDRESS": f"http://127.0.0.1:{self.node}",
            "RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{self.ingress}",
            "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{self.admin}",
            "RESTATE_DISABLE_TELEMETRY": "true",
            "RESTATE_LOG_FILTER": "warn",
        }
        self.env = env
        self.server = subprocess.Popen(
            [str(SERVER), "--no-logo"], env=env, stdout=sys.stderr, stderr=sys.stderr
        )
        self.service = subprocess.Popen(
            [sys.executable, "-m", "hypercorn", "restate_service:app", "--bind",
             f"127.0.0.1:{self.svc}", "--log-level", "WARNING"],
            cwd=HERE, stdout=sys.stderr, stderr=sys.stderr,
        )  # fmt: skip

    def __enter__(self) -> Restate:
        wait_http(f"http://127.0.0.1:{self.admin}/health")
        wait_http(f"http://127.0.0.1:{self.ingress}/restate/health")
        deadline = time.monotonic() + 60
        while True:  # the service's port opens a moment after hypercorn starts
            answer = httpx.post(
                f"http://127.0.0.1:{self.admin}/deployments",
                json={"uri": f"http://127.0.0.1:{self.svc}"},
                timeout=30,
            )
            if answer.status_code < 300:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"registering the service failed: {answer.text[:300]}")
            time.sleep(0.3)
        return self

    def durability(self) -> str:
        dumped = subprocess.run(
            [str(SERVER), "--dump-config"], env=self.env, capture_output=True, text=True
        ).stdout
        off = "rocksdb-disable-wal-fsync = true" in dumped
        return (
            f"restate-server {version()} single node, replicated loglet on its log-server "
            f"(RocksDB WAL fsync {'off' if off else 'on'}), data in .bench/"
        )

    def __exit__(self, *exc: object) -> None:
        for proc in (self.service, self.server):
            proc.terminate()
        for proc in (self.service, self.server):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def version() -> str:
    out = subprocess.run([str(SERVER), "--version"], capture_output=True, text=True).stdout
    return out.split()[-1] if out else "?"


async def invoke(client: httpx.AsyncClient, handler: str, k: int) -> int:
    answer = await client.post(f"/Bench/{handler}", json=k)
    answer.raise_for_status()
    return int(answer.json())


async def saturate(client: httpx.AsyncClient, k: int, n: int) -> list[int]:
    """All N invocations sent at once (``/send``: the server journals each and answers at
    once), then each one's result (``attach``), so the server holds all N in flight, as Baton
    and the other peers do, rather than as many as the client has connections."""
    sent = await asyncio.gather(*(client.post("/Bench/chain/send", json=k) for _ in range(n)))
    ids = []
    for answer in sent:
        answer.raise_for_status()
        ids.append(answer.json()["invocationId"])

    async def result(invocation: str) -> int:
        answer = await client.get(f"/restate/invocation/{invocation}/attach")
        answer.raise_for_status()
        return int(answer.json())

    return list(await asyncio.gather(*(result(i) for i in ids)))


async def run(args, restate: Restate, latencies: list[float]) -> _common.Timer:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    base = f"http://127.0.0.1:{restate.ingress}"
    handler = "fanout" if args.workload == "fanout" else "chain"
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=300) as client:
        for _ in range(args.warmup):
            await invoke(client, handler, args.k)
        # CPU: the server and the service, not this client (Baton's leave out the bench too)
        with _common.Timer(include_self=False) as timer:
            if args.workload == "saturation":
                done = await saturate(client, args.k, args.n)
                assert all(d == args.k for d in done), done[:3]
            else:
                for _ in range(args.n):
                    t0 = time.perf_counter()
                    await invoke(client, handler, args.k)
                    latencies.append((time.perf_counter() - t0) * 1000)
    return timer


def main() -> None:
    args = _common.parse_args("restate", ("service",))
    if not SERVER.exists():
        sys.exit(f"no restate-server at {SERVER}: run bench/peers/setup_peers.sh")
    _common.reserve_stdout()
    latencies: list[float] = []
    with Restate() as restate:
        timer = asyncio.run(run(args, restate, latencies))
        durability = restate.durability()
    _common.emit("restate", args.variant, args, timer, latencies, durability=durability)


if __name__ == "__main__":
    main()
