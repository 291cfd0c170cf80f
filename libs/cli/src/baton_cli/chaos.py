"""``baton chaos``: load on a private engine while its processes are killed, then a count.

It starts its own engine (``baton up`` in a temporary folder), a local HTTP target that honours
``Idempotency-Key`` the way payment APIs do, and submits executions whose steps POST to that
target. Meanwhile it kills, with SIGKILL and each in turn at a random moment of its slot, every
service process, nats-server and PostgreSQL (``baton up`` restarts each). When the load is done it
waits for the executions to end and counts:

- finished: ended (succeeded, or failed with a reason recorded);
- lost: accepted by the gateway but unknown at the end, or succeeded with a side effect missing;
- stuck: known but still not ended when the drain time ran out;
- duplicated: a side effect (execution n, step s) performed more than once at the target, under
  any key; ``repeats`` counts the calls the target absorbed by key (retries after a kill).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from baton_common.embedded import EmbeddedError, free_port

TERMINAL = ("succeeded", "failed", "cancelled")
STEPS = 3  # side effects per execution


class IdempotentTarget(ThreadingHTTPServer):
    """The first call with a key does the work (and counts the effect); a repeat of the key gets
    the recorded answer without doing it again."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _TargetHandler)
        self.lock = threading.Lock()
        self.keys: dict[str, tuple[int, int]] = {}  # key -> the effect it performed
        self.effects: Counter[tuple[int, int]] = Counter()  # (execution n, step) -> times done
        self.repeats = 0
        self.no_key = 0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/effect"

    def perform(self, key: str | None, body: dict[str, Any]) -> bool:
        effect = (int(body.get("n", -1)), int(body.get("step", -1)))
        with self.lock:
            if key is None:
                self.no_key += 1
            elif key in self.keys:
                self.repeats += 1
                return False
            else:
                self.keys[key] = effect
            self.effects[effect] += 1
            return True


class _TargetHandler(BaseHTTPRequestHandler):
    server: IdempotentTarget

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw)
        except ValueError:
            # Cut short (the caller was killed while sending it): refused, as a payment API
            # would, without taking its key; the retry is the call.
            self.send_error(400, "incomplete body")
            return
        if self.server.perform(self.headers.get("Idempotency-Key"), body):
            time.sleep(random.uniform(0.02, 0.15))  # the work takes a while: kills land mid-call
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "11")
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *_: object) -> None:
        pass


@dataclass
class ChaosReport:
    """What ``baton chaos`` measured."""

    executions: int
    duration_s: float
    seed: int
    accepted: int = 0
    not_accepted: int = 0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    lost: int = 0
    stuck: int = 0
    duplicated: int = 0
    repeats: int = 0
    effects: int = 0
    parked: int | None = None  # dead letters in the workspace at the end (None: not readable)
    # executions whose view differs after ``baton projections rebuild`` (None: not checked)
    unlike_rebuild: int | None = None
    replicas: str = ""  # processes per service (BATON_REPLICAS), "" for one each
    drain_s: float = 0.0
    rebuilt: bool = False  # the views were compared with a rebuild's (``unlike_rebuild``)
    kills: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Nothing lost, stuck or duplicated; and the views are a rebuild's, when compared."""
        views_ok = not self.rebuilt or self.unlike_rebuild == 0
        return self.lost == self.duplicated == self.stuck == 0 and views_ok


class Chaos:
    """One chaos run: its engine, target, load and killer."""

    def __init__(
        self,
        executions: int,
        duration: float,
        seed: int,
        drain: float,
        log: Any,
        rounds: int = 1,
        scale: Scale | None = None,
    ) -> None:
        self.n, self.duration, self.drain, self.rounds = executions, duration, drain, rounds
        self.rng = random.Random(seed)
        self.log = log
        self.scale = scale or Scale()
        self.report = ChaosReport(executions, duration, seed, replicas=self.scale.replicas)
        self.data_dir = Path(tempfile.mkdtemp(prefix="baton-chaos-"))
        self.data_dir.chmod(0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted: dict[int, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(timeout=10)

    # --- the engine ---------------------------------------------------------------------------

    def start_engine(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NATS_", "DATABASE_"))}
        for name in ("BATON_URL", "BATON_API_KEY", "BATON_API_TOKEN"):
            env.pop(name, None)
        env.update(
            BATON_DATA_DIR=str(self.data_dir),
            BATON_HTTP_PORT=str(self.port),
            BATON_ACK_WAIT="3",  # a killed worker's lease runs out in seconds
            OTEL_SDK_DISABLED="true",
            BATON_REPLICAS=self.scale.replicas,
            # the target is on this machine: the egress guard refuses loopback unless allowed
            BATON_EGRESS_ALLOW=",".join(filter(None, [env.get("BATON_EGRESS_ALLOW"), "127.0.0.1"])),
        )
        out = open(self.data_dir / "up.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "baton_cli", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
        out.close()
        deadline = time.monotonic() + 180  # a loaded machine starts 14 processes slowly
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise EmbeddedError(f"baton up exited; see {self.data_dir / 'up.log'}")
            if self._get("/readyz") is not None:
                token = (self.data_dir / "owner.key").read_text().strip()
                self.http.headers["Authorization"] = f"Bearer {token}"
                return
            time.sleep(0.2)
        raise EmbeddedError(f"the chaos engine did not become ready; see {self.data_dir}")

    def stop_engine(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            resp = self.http.get(self.url + path)
        except httpx.HTTPError:
            return None
        return dict(resp.json()) if resp.status_code == 200 else None

    # --- load -----------------------------------------------------------------------------------

    def submit_all(self, target: IdempotentTarget, stop_at: float) -> None:
        t0 = time.monotonic()
        for n in range(self.n):
            time.sleep(max(0.0, t0 + n * self.duration / self.n - time.monotonic()))
            body = {"plan": _plan(target.url, n), "idempotency_key": f"chaos-{n}"}
            while time.monotonic() < stop_at:  # the gateway (or its database) may be down
                try:
                    resp = self.http.post(self.url + "/v1/executions", json=body)
                    if resp.status_code in (200, 202):
                        self.accepted[n] = resp.json()["id"]
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            else:
                self.report.not_accepted += 1

    # --- kills ----------------------------------------------------------------------------------

    def kill_in_turn(self) -> None:
        runtime = self._runtime()
        names = sorted(runtime.get("pids", {})) + sorted(runtime.get("servers", {}))
        names = [n for n in names if self.scale.kills(n)]
        targets: list[str] = []
        for _ in range(self.rounds):  # each round kills every process once, in a new order
            self.rng.shuffle(names)
            targets += names
        slot = self.duration / max(1, len(targets))
        t0 = time.monotonic()
        for i, name in enumerate(targets):
            at = t0 + slot * (i + self.rng.uniform(0.1, 0.9))
            time.sleep(max(0.0, at - time.monotonic()))
            current = self._runtime()
            pid = {**current.get("pids", {}), **current.get("servers", {})}.get(name)
            if pid is None:
                continue
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError as exc:
                self.log(f"  could not kill {name} ({pid}): {exc}")
                continue
            when = round(time.monotonic() - t0, 1)
            self.report.kills.append({"at_s": when, "process": name, "pid": pid})
            self.log(f"  +{when:5.1f}s killed {name} (pid {pid})")

    def _runtime(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.data_dir / "runtime.json").read_text()))
        except (OSError, ValueError):
            return {}

    # --- the count ------------------------------------------------------------------------------

    def settle(self, target: IdempotentTarget) -> None:
        t0 = time.monotonic()
        views: dict[int, dict[str, Any] | None] = {}
        pending = dict(self.accepted)
        while pending and time.monotonic() - t0 < self.drain:
            for n, eid in list(pending.items()):
                view = self._get(f"/v1/executions/{eid}")
                views[n] = view
                if view is not None and view.get("status") in TERMINAL:
                    del pending[n]
            if pending:
                time.sleep(0.5)
        self.report.drain_s = round(time.monotonic() - t0, 1)
        self._count(views, target)
        dead = self._get("/v1/deadletters?limit=1000")  # a parked message is work not done
        self.report.parked = len(dead["items"]) if dead is not None else None
        if self.scale.rebuild:
            self.report.rebuilt = True
            self.report.unlike_rebuild = self.compare_with_rebuild()

    def compare_with_rebuild(self) -> int | None:
        """Rebuild the read models from the events; count the ended executions whose view
        changed (None: the rebuild failed; one still running changes anyway, and is counted
        as stuck). The live views are read again first: the projector may have applied a
        last event after an execution was seen ending."""
        live = {n: self._get(f"/v1/executions/{eid}") for n, eid in self.accepted.items()}
        live = {n: v for n, v in live.items() if v is not None and v.get("status") in TERMINAL}
        env = {**os.environ, "BATON_DATA_DIR": str(self.data_dir), "OTEL_SDK_DISABLED": "true"}
        done = subprocess.run(
            [sys.executable, "-m", "baton_cli", "projections", "rebuild"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            self.report.failures.append(f"rebuild failed: {done.stderr[-500:]}")
            return None
        unlike = 0
        for n, view in live.items():
            eid = self.accepted[n]
            if self._get(f"/v1/executions/{eid}") != view:
                unlike += 1
                self.report.failures.append(
                    f"execution {n} ({eid}): its view differs after a rebuild"
                )
        return unlike

    def _count(self, views: dict[int, dict[str, Any] | None], target: IdempotentTarget) -> None:
        r = self.report
        r.accepted = len(self.accepted)
        for n in self.accepted:
            view = views.get(n)
            status = view.get("status") if view else None
            if view is None:
                r.lost += 1
                r.failures.append(f"execution {n}: accepted but unknown at the end")
            elif status not in TERMINAL:
                r.stuck += 1
                r.failures.append(f"execution {n} ({view['id']}): still {status}")
            else:
                r.finished += 1
                r.succeeded += status == "succeeded"
                r.failed += status != "succeeded"
                if status != "succeeded":
                    r.failures.append(f"execution {n} ({view['id']}): {view.get('error')}")
                missing = [s for s in range(STEPS) if not target.effects[(n, s)]]
                if status == "succeeded" and missing:
                    r.lost += 1
                    r.failures.append(f"execution {n}: succeeded without effects {missing}")
        r.duplicated = sum(c - 1 for c in target.effects.values() if c > 1)
        r.repeats, r.effects = target.repeats, sum(target.effects.values())


@dataclass
class Scale:
    """How many processes of each service run, which are killed, what is checked at the end."""

    replicas: str = ""  # BATON_REPLICAS: ``executor=2,gateway=2``
    only: tuple[str, ...] = ()  # kill only these services (and servers); () kills every one
    rebuild: bool = False  # compare every execution's view with a rebuild's

    def kills(self, process: str) -> bool:
        return not self.only or process.partition("#")[0] in self.only


def _plan(url: str, n: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for s in range(STEPS):
        step: dict[str, Any] = {
            "id": f"s{s}",
            "tool": "http.request",
            "input": {"url": url, "method": "POST", "json": {"n": n, "step": s}},
            "retry": {"max_attempts": 10, "backoff_s": 0.5, "max_backoff_s": 5},
            "timeout": 10,
        }
        if s:
            step["depends_on"] = [f"s{s - 1}"]
        steps.append(step)
    return {"steps": steps}


def run_chaos(
    executions: int,
    duration: float,
    seed: int,
    drain: float,
    log: Any = print,
    keep: bool = False,
    rounds: int = 1,
    scale: Scale | None = None,
) -> ChaosReport:
    """Start an engine, load it while killing its processes, count, stop it."""
    chaos = Chaos(executions, duration, seed, drain, log, rounds, scale)
    target = IdempotentTarget()
    log(f"chaos: engine in {chaos.data_dir}, {executions} executions over {duration:g}s")
    try:
        chaos.start_engine()
        stop_at = time.monotonic() + duration + drain
        load = threading.Thread(target=chaos.submit_all, args=(target, stop_at), daemon=True)
        load.start()
        chaos.kill_in_turn()
        load.join()
        log(f"chaos: load done ({len(chaos.accepted)} accepted); waiting for them to end")
        chaos.settle(target)
    finally:
        chaos.stop_engine()
        target.shutdown()
    r = chaos.report
    if r.clean and not keep:
        shutil.rmtree(chaos.data_dir, ignore_errors=True)
    else:
        log(f"chaos: the engine's data and logs are kept in {chaos.data_dir}")
    return r


def as_markdown(r: ChaosReport) -> str:
    kills = ", ".join(f"{k['process']} @{k['at_s']}s" for k in r.kills)
    rows = [
        ("executions submitted / accepted", f"{r.executions} / {r.accepted}"),
        ("finished (succeeded + failed)", f"{r.finished} ({r.succeeded} + {r.failed})"),
        ("lost", r.lost),
        ("stuck", r.stuck),
        ("duplicate side effects", r.duplicated),
        ("side effects performed", r.effects),
        ("repeated calls absorbed by Idempotency-Key", r.repeats),
        ("messages parked as dead letters", "?" if r.parked is None else r.parked),
        (
            "views unlike a rebuild's",
            "not checked" if r.unlike_rebuild is None else r.unlike_rebuild,
        ),
        ("replicas", r.replicas or "one of each"),
        ("drain after the load (s)", r.drain_s),
        ("processes killed (SIGKILL)", f"{len(r.kills)}: {kills}"),
    ]
    lines = ["| measure | value |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows]]
    if r.failures:
        lines += ["", "Not finished or failed:", *[f"- {f}" for f in r.failures[:20]]]
    return "\n".join(lines)


def cmd_chaos(args: Any) -> int:
    report = run_chaos(
        args.executions,
        args.duration,
        args.seed,
        args.drain,
        log=lambda m: print(m, file=sys.stderr, flush=True),
        keep=args.keep,
        rounds=args.rounds,
        scale=Scale(",".join(args.replicas or []), tuple(args.kill or ()), args.rebuild),
    )
    print(json.dumps(asdict(report), indent=2) if args.json else as_markdown(report))
    return 0 if report.clean else 1


def add_chaos_command(sub: Any) -> None:
    chaos = sub.add_parser(
        "chaos",
        help="load a private engine while killing its services, nats-server and PostgreSQL in "
        "turn; report executions finished, lost, stuck and duplicate side effects",
    )
    chaos.add_argument("--executions", type=int, default=100, help="executions to submit")
    chaos.add_argument("--duration", type=float, default=60, help="seconds of load and kills")
    chaos.add_argument("--seed", type=int, default=1, help="the kills' order and moments")
    chaos.add_argument(
        "--rounds", type=int, default=1, help="times each process is killed (in turn, per round)"
    )
    chaos.add_argument(
        "--drain", type=float, default=120, help="seconds to wait for executions to end after"
    )
    chaos.add_argument(
        "--replicas",
        action="append",
        metavar="NAME=N",
        help="run N processes of a service, each killed in turn (repeatable: executor=2)",
    )
    chaos.add_argument(
        "--kill",
        action="append",
        metavar="NAME",
        help="kill only these (repeatable: a service with its replicas, nats-server, postgres)",
    )
    chaos.add_argument(
        "--rebuild",
        action="store_true",
        help="at the end, rebuild the read models and count the executions whose view changed",
    )
    chaos.add_argument("--keep", action="store_true", help="keep the engine's data and logs")
    chaos.add_argument("--json", action="store_true")
    chaos.set_defaults(fn=cmd_chaos)
