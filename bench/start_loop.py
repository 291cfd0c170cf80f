"""Start and stop engines in a loop, as the e2e fixtures do, and catch a service that does not
become ready (CI: one executor in ~35 engines logged its tool scan, never "ready", and ignored
SIGTERM at the stop).

Each round: ``baton up`` on a fresh data folder and free ports; the gateway's ``/readyz``; then
every service's log must say "<name> ready" within ``--bound`` seconds. A service that does not
is dumped (``py-spy dump``, each thread's kernel wait channel, ``/proc/<pid>/status``) into
``--out`` before the stop. The stop is SIGTERM to ``baton up``, as the fixtures send it; a stop
that up.log reports as killed ("did not stop") is counted too. ``--load N`` runs N busy loops
beside it (a CI machine's other test worker).

    .venv/bin/python bench/start_loop.py --rounds 60 --load 2 --out /tmp/start-loop
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

BATON = str(Path(sys.executable).parent / "baton")
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def busy() -> None:
    while True:
        pass


def start(data_dir: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update(
        BATON_DATA_DIR=str(data_dir),
        BATON_HTTP_PORT=str(port),
        BATON_ACK_WAIT="3",
        OTEL_SDK_DISABLED="true",
        BATON_API_TOKEN=secrets.token_urlsafe(24),
        BATON_EGRESS_ALLOW="127.0.0.1",
        **extra,
    )
    with open(data_dir / "up.log", "wb") as log:
        proc = subprocess.Popen([BATON, "up"], env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def gateway_ready(url: str, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def runtime(data_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((data_dir / "runtime.json").read_text()))
    except (OSError, ValueError):
        return {}


def said_ready(data_dir: Path, name: str) -> bool:
    try:
        text = (data_dir / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return False
    base = name.partition("#")[0]
    return f'"{base} ready"' in text or f"{base} ready" in text


def status(pid: int) -> dict[str, str]:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    keep = ("State", "Threads", "SigBlk", "SigIgn", "SigCgt", "SigPnd", "ShdPnd")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines) if k in keep}


def threads(pid: int) -> list[str]:
    out = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            name = (task / "comm").read_text().strip()
            wchan = (task / "wchan").read_text().strip()
            blk = next(
                (
                    x.split()[1]
                    for x in (task / "status").read_text().splitlines()
                    if x.startswith("SigBlk")
                ),
                "?",
            )
        except OSError:
            continue
        out.append(f"{task.name} {name} wchan={wchan} SigBlk={blk}")
    return out


def fds(pid: int) -> list[str]:
    out = []
    for fd in sorted(Path(f"/proc/{pid}/fd").glob("*"), key=lambda p: int(p.name)):
        try:
            out.append(f"{fd.name} -> {os.readlink(fd)}")
        except OSError:
            pass
    return out


def dump(pid: int, name: str, out: Path, why: str) -> Path:
    """Everything that says where ``pid`` waits."""
    path = out / f"{time.strftime('%H%M%S')}-{name}-{pid}.txt"
    parts = [f"{name} pid {pid}: {why}", json.dumps(status(pid)), *threads(pid), *fds(pid)]
    try:
        spy = subprocess.run(
            [PY_SPY, "dump", "--pid", str(pid), "--locals"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        parts += ["--- py-spy dump", spy.stdout, spy.stderr]
    except (OSError, subprocess.TimeoutExpired) as exc:
        parts.append(f"py-spy: {exc}")
    path.write_text("\n".join(parts))
    return path


def stop(proc: subprocess.Popen[bytes], grace: float = 90) -> float:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return time.monotonic() - began


def one_round(n: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="baton-loop-"))
    data_dir.chmod(0o755)
    began = time.monotonic()
    proc, url = start(data_dir, dict(args.env))
    row: dict[str, Any] = {"round": n, "data": str(data_dir)}
    try:
        row["gateway"] = gateway_ready(url, proc, 120)
        info = runtime(data_dir)
        pids: dict[str, int] = info.get("pids", {})
        if n == 1 and args.inspect:
            inspect(info, out)
        deadline = time.monotonic() + args.bound
        waiting = set(pids)
        while waiting and time.monotonic() < deadline:
            waiting = {name for name in waiting if not said_ready(data_dir, name)}
            time.sleep(0.2)
        row["ready_s"] = round(time.monotonic() - began, 1)
        row["not_ready"] = sorted(waiting)
        for name in waiting:
            row.setdefault("dumps", []).append(str(dump(pids[name], name, out, "not ready")))
    finally:
        row["stop_s"] = round(stop(proc), 1)
    up_log = (data_dir / "up.log").read_text(errors="replace")
    row["killed"] = [line.strip() for line in up_log.splitlines() if "did not stop" in line]
    row["exited"] = [line.strip() for line in up_log.splitlines() if " exited (" in line]
    if row["not_ready"] or row["killed"] or row["exited"] or not row["gateway"]:
        kept = out / f"round-{n}-logs"
        shutil.copytree(data_dir / "logs", kept, dirs_exist_ok=True)
        shutil.copy(data_dir / "up.log", kept / "up.log")
    shutil.rmtree(data_dir, ignore_errors=True)
    return row


def inspect(info: dict[str, Any], out: Path) -> None:
    """The signal state, threads and files of the fork server and every forked service."""
    lines = []
    targets = {"fork-server": info.get("fork_server"), **info.get("pids", {})}
    for name, pid in targets.items():
        if not pid:
            continue
        lines += [f"== {name} ({pid}) {json.dumps(status(pid))}", *threads(pid), *fds(pid)]
    (out / "inspect.txt").write_text("\n".join(lines))
    print(f"inspected: {out / 'inspect.txt'}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=60)
    p.add_argument("--bound", type=float, default=60.0, help="seconds for every service's ready")
    p.add_argument("--load", type=int, default=0, help="busy loops beside the engine")
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "start-loop")
    p.add_argument("--inspect", action="store_true", help="dump /proc state in round 1")
    p.add_argument("--env", action="append", default=[], type=lambda s: tuple(s.split("=", 1)))
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    loads = [multiprocessing.Process(target=busy, daemon=True) for _ in range(args.load)]
    for load in loads:
        load.start()
    bad = 0
    try:
        for n in range(1, args.rounds + 1):
            row = one_round(n, args, args.out)
            bad += bool(row["not_ready"] or row["killed"] or not row["gateway"])
            print(json.dumps(row), flush=True)
    finally:
        for load in loads:
            load.terminate()
    print(f"{args.rounds} rounds, {bad} bad (load {args.load})", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
