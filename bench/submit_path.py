"""`make bench-submit`: the gateway's HTTP path before the intake commit, timed inside the gateway.

The gateway's app (``create_app``, every middleware) served by uvicorn as ``baton serve gateway``
serves it (httptools, no WebSocket, no lifespan), on a real intake store in PostgreSQL (a private
durable cluster, or ``DATABASE_URL``). A client in another process sends ``POST /v1/executions``
one at a time over one keep-alive connection, a direct plan (a K=5 chain) and a request in words
in turn. Stamped inside the gateway, per request:

- **arrival**: the request's bytes handed to uvicorn's HTTP parser (``data_received``);
- **ASGI entry**: uvicorn calls the app;
- **commit start / end**: the intake store's ``commit_async`` called / returned;
- **answer**: the 202's head sent.

The figure of issue 32 is arrival → commit start (the path); the commit itself is printed beside
it, with the floor of a durable step measured in the same run: one single-row PostgreSQL commit
(autocommit ``INSERT``, as ``make bench`` measures it).

    .venv/bin/python -m bench.submit_path [--requests N] [--rounds R] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from bench import baton_bench as bb

WORDS = "collect incident reports for api, billing and search and summarise them"
SHAPES = {"plan": {"plan": bb.chain_plan(5)}, "words": {"request": WORDS}}
Stamps = dict[str, int]


class Probe:
    """The stamps of the request in flight (one connection, one request at a time)."""

    def __init__(self) -> None:
        self.current: Stamps = {}
        self.done: list[Stamps] = []

    def stamp(self, name: str) -> None:
        self.current.setdefault(name, time.perf_counter_ns())

    def next(self) -> None:
        if self.current:
            self.done.append(self.current)
        self.current = {}


def _instrument(probe: Probe, app: Any, store: Any) -> Any:
    """Stamps at the parser, the app's entry, the commit and the answer (the bench's own
    wrappers: the gateway's code is left as it runs)."""
    from uvicorn.protocols.http import httptools_impl

    received = httptools_impl.HttpToolsProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        if "answer" in probe.current:  # the bytes of the next request
            probe.next()
        probe.stamp("arrival")
        received(self, data)

    httptools_impl.HttpToolsProtocol.data_received = data_received  # type: ignore[method-assign]
    commit = store.commit_async

    async def commit_async(c: Any) -> Any:
        probe.stamp("commit_start")
        rows = await commit(c)
        probe.stamp("commit_end")
        return rows

    store.commit_async = commit_async

    async def entry(scope: Any, receive: Any, send: Any) -> None:
        probe.stamp("asgi")

        async def answer(message: Any) -> None:
            if message["type"] == "http.response.start":
                probe.stamp("answer")
            await send(message)

        await app(scope, receive, answer)

    return entry


def _stages(probe: Probe) -> None:
    """``--stages``: stamps inside the route too (its entry, the checks off the loop, the
    sealing), by wrapping what ``routes.executions`` calls."""
    from baton_gateway.routes import executions

    def wrap(name: str, before: str, after: str) -> None:
        fn = getattr(executions, name, None)
        if fn is None:  # an older gateway (the bench's own before/after runs)
            return

        async def stamped(*args: Any) -> Any:
            probe.stamp(before)
            result = await fn(*args)
            probe.stamp(after)
            return result

        setattr(executions, name, stamped)

    wrap("saved_plans_exist", "route", "route")
    wrap("checked", "checks_start", "checks_end")
    wrap("off_loop", "checks_start", "checks_end")
    wrap("sealed", "sealed_start", "sealed_end")


def _services(url: str, schema: str) -> tuple[Any, str]:
    """The gateway's intake and access on a real store, and an operator key."""
    from baton_common.sealing import Sealer
    from baton_common.store import PostgresEventStore
    from baton_common.workspaces import DEFAULT_WORKSPACE
    from baton_gateway.access import AccessApp
    from baton_gateway.application import IntakeApp
    from baton_gateway.domain import Principal
    from baton_gateway.services import Services

    store = PostgresEventStore(url, "gateway", schema=schema)
    access = AccessApp(store, None)
    access.ensure_workspace(DEFAULT_WORKSPACE, "Default")
    root = Principal(DEFAULT_WORKSPACE, "owner", "root")
    _, key = access.create_key(DEFAULT_WORKSPACE, "operator", "bench", None, root)
    intake = IntakeApp(store, None)
    services = Services(intake=intake, reader=None, access=access, sealer=Sealer.in_memory())  # type: ignore[arg-type]
    return services, key


def floor_ms(url: str, n: int = 500) -> float:
    """One single-row durable commit (autocommit INSERT), p50 of ``n``."""
    table = f"floor_{uuid.uuid4().hex[:8]}"
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigserial primary key, body text)")
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute(f"INSERT INTO {table} (body) VALUES (%s)", ("x" * 200,))
            times.append((time.perf_counter() - t0) * 1000)
        conn.execute(f"DROP TABLE {table}")
    return _pct(times, 50)


def _pct(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


async def _serve(app: Any, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http="httptools", ws="none", log_level="warning",
        log_config=None, lifespan="off", proxy_headers=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    server.capture_signals = lambda: __import__("contextlib").nullcontext()  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task


async def _client(port: int, key: str, n: int) -> list[dict[str, Any]]:
    """The client process, run and read (its round trips and statuses)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.submit_path", "--client", str(port), key, str(n),
        stdout=subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    answers: list[dict[str, Any]] = json.loads(out)
    return answers


def client_main(port: int, key: str, n: int) -> None:
    """Sends ``n`` submissions of each shape in turn, one at a time; prints what came back."""
    requests = [_request(key, body) for body in SHAPES.values()]
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    answers = []
    for i in range(2 * n):
        t0 = time.perf_counter()
        sock.sendall(requests[i % 2])
        status, _ = _response(sock)
        answers.append({"status": status, "rtt_ms": (time.perf_counter() - t0) * 1000})
    sock.close()
    print(json.dumps(answers))


def _request(key: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        "POST /v1/executions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {key}\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _response(sock: socket.socket) -> tuple[int, bytes]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head.split(b" ", 2)[1]), rest


async def measure(
    url: str, n: int, profile: str | None = None, stages: bool = False
) -> dict[str, Any]:
    """``n`` submissions of each shape (after a warm-up), their stamps, and the floor."""
    from baton_common.embedded import free_port
    from baton_gateway.api import create_app

    schema = f"submit_{uuid.uuid4().hex[:6]}"
    services, key = await asyncio.to_thread(_services, url, schema)
    probe = Probe()
    if stages:
        _stages(probe)
    app = _instrument(probe, create_app(services), services.intake.store)
    port = free_port()
    server, task = await _serve(app, port)
    try:
        await _client(port, key, 50)  # warm-up: the key and policy remembered, pools open
        probe.next()
        probe.done.clear()
        profiler = _profiler(profile)
        answers = await _client(port, key, n)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        probe.next()
    finally:
        server.should_exit = True
        await task
        services.intake.store.close()
        await asyncio.to_thread(_drop, url, schema)
    bad = [a["status"] for a in answers if a["status"] != 202]
    if bad or len(probe.done) != len(answers):
        raise SystemExit(f"unexpected answers {bad[:5]} or stamps {len(probe.done)}")
    return {"shapes": _figures(probe.done, answers), "floor_ms": floor_ms(url)}


def _profiler(path: str | None) -> Any:
    if path is None:
        return None
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    return profiler


def _drop(url: str, schema: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


SPANS = [
    ("path", "arrival", "commit_start"),
    ("to_asgi", "arrival", "asgi"),
    ("in_app", "asgi", "commit_start"),
    ("commit", "commit_start", "commit_end"),
    ("after", "commit_end", "answer"),
]
STAGES = [
    ("to the route", "asgi", "route"),
    ("route → checks", "route", "checks_start"),
    ("checks", "checks_start", "checks_end"),
    ("checks → sealing", "checks_end", "sealed_start"),
    ("sealing", "sealed_start", "sealed_end"),
    ("sealed → commit", "sealed_end", "commit_start"),
]


def _figures(stamps: list[Stamps], answers: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, shape in enumerate(SHAPES):
        mine = stamps[i::2]
        spans = SPANS + (STAGES if "route" in mine[0] else [])
        figures = {
            name: [(s[b] - s[a]) / 1e6 for s in mine if a in s and b in s] for name, a, b in spans
        }  # fmt: skip
        figures = {name: v for name, v in figures.items() if v}
        figures["client"] = [a["rtt_ms"] for a in answers[i::2]]
        out[shape] = {name: (_pct(v, 50), _pct(v, 99)) for name, v in figures.items()}
    return out


def report(result: dict[str, Any]) -> list[str]:
    floor = result["floor_ms"]
    lines = [
        f"Submit path (`POST /v1/executions`, one at a time; load average "
        f"{result['load']}); one PostgreSQL single-row commit in this run: {floor:.3f} ms.",
        "",
        "| shape | arrival → commit start p50 / p99 | of which to the app | in the app "
        "| intake commit p50 / p99 | commit → 202 sent | client round trip p50 |",
        "|---|---|---|---|---|---|---|",
    ]
    for shape, f in result["shapes"].items():
        path, commit = f["path"], f["commit"]
        lines.append(
            f"| {shape} | {path[0]:.3f} / {path[1]:.3f} ms ({path[0] / floor:.1f} commits) "
            f"| {f['to_asgi'][0]:.3f} ms | {f['in_app'][0]:.3f} ms "
            f"| {commit[0]:.3f} / {commit[1]:.3f} ms | {f['after'][0]:.3f} ms "
            f"| {f['client'][0]:.3f} ms |"
        )
    for shape, f in result["shapes"].items():
        stages = [f"{name} {f[name][0]:.3f}" for name, _, _ in STAGES if name in f]
        if stages:
            lines.append(f"\n{shape}, stages (p50 ms): " + "; ".join(stages))
    return lines


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="of each shape, per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--profile", help="cProfile the gateway's process into this file")
    parser.add_argument("--stages", action="store_true", help="stamps inside the route too")
    args = parser.parse_args()
    os.environ.setdefault("OTEL_SDK_DISABLED", "true")
    pg = None
    url = os.environ.get("DATABASE_URL")
    if url is None:
        from baton_common.embedded import PostgresServer

        work = Path(tempfile.mkdtemp(prefix="baton-submit-pg-"))
        work.chmod(0o755)
        pg = PostgresServer(work / "pg").start()
        url = pg.url
    try:
        for _ in range(args.rounds):
            load = _load()
            result = asyncio.run(measure(url, args.requests, args.profile, args.stages))
            result["load"] = load
            print("\n".join(report(result)), "\n", flush=True)
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
