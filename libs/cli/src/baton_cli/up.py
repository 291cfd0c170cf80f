"""``baton up``: the whole engine on one machine, every service its own process.

Starts a private nats-server and PostgreSQL under the data folder unless NATS_URL /
DATABASE_URL point at running ones, then the services; restarts a service or a private server
that dies (a server on its same port and data); stops everything cleanly on Ctrl-C / SIGTERM.

Each service's process is forked from a fork server that imported what they all import
(``zygote``, Linux; ``BATON_FORK_SERVER=0``: each started afresh), so the libraries' pages are
shared between them.

``--one-process``: the services as tasks of one process (``baton serve a b …``, ``together``)
instead, for laptops and CI: the same services, subjects and stores in less memory, but one
crash stops (and restarts) them all. The servers stay processes of their own.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from baton_common import natstls
from baton_common.busauth import ADMIN, Keys, role_of, write_auth
from baton_common.embedded import EmbeddedError, NatsServer, PostgresServer, free_port
from baton_common.keystrings import mint_key
from baton_common.prices import PricesInvalid, llm_prices
from baton_common.sealing import ensure_key_file
from baton_common.settings import Settings, auth_folder

from baton_cli import zygote

# Start order: read models first, the gateway (what users reach) last; services that
# plugins add start in between.
FIRST, LAST = ("projector", "planner", "executor", "worker"), ("gateway",)
ONE_PROCESS = "engine"  # the child's name when every service shares one process


def services() -> list[str]:
    from importlib.metadata import entry_points

    names = {e.name for e in entry_points(group="baton.services")}
    middle = sorted(names - set(FIRST) - set(LAST))
    return [n for n in (*FIRST, *middle, *LAST) if n in names]


# A service that listens on one fixed address of its own cannot run twice on one machine.
ONE_ONLY = {"webhook": "it listens for inbound hooks on one port (BATON_WEBHOOK_PORT)"}


def replica_counts(spec: str | None = None) -> dict[str, int]:
    """``BATON_REPLICAS`` (or ``spec``), ``executor=2,gateway=2``: processes per service;
    ``BATON_WORKERS`` still counts the tool workers when the spec does not name them."""
    spec = os.environ.get("BATON_REPLICAS", "") if spec is None else spec
    counts = {"worker": _count("BATON_WORKERS", os.environ.get("BATON_WORKERS") or "1")}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise EmbeddedError(f"replicas: {item!r} is not NAME=COUNT (executor=2)")
        counts[name.strip()] = _count(item, value)
    if unknown := sorted(set(counts) - set(services()) - {"worker"}):
        raise EmbeddedError(
            f"replicas: no service {', '.join(unknown)}; one of: {', '.join(services())}"
        )
    for name, why in ONE_ONLY.items():
        if counts.get(name, 1) > 1:
            raise EmbeddedError(f"replicas: one {name} only on one machine: {why}")
    return counts


def _count(what: str, value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 16:
        raise EmbeddedError(f"replicas: {what!r}: the count is a whole number from 1 to 16")
    return count


def replicas(name: str, counts: dict[str, int]) -> list[str]:
    """Child names of a service: ``worker``, ``worker#2``…"""
    return [name] + [f"{name}#{i}" for i in range(2, counts.get(name, 1) + 1)]


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes] | zygote.Forked
    started: float = field(default_factory=time.monotonic)
    restarts: int = 0


class Engine:
    """The supervisor: servers, service processes, restarts and shutdown."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        log: Callable[[str], None] = print,
        *,
        one_process: bool = False,
    ) -> None:
        self.data_dir = data_dir.absolute()
        self.port = port
        self.log = log
        self.one_process = one_process
        self.children: dict[str, Child] = {}
        self.servers: list[NatsServer | PostgresServer] = []
        self.nats_keys: Keys | None = None  # set when this supervisor runs its own nats-server
        self.env: dict[str, str] = {}
        self.stopping = False
        self.health_ports: dict[str, int] = {}
        self.webhook_port: int | None = None  # the webhook service's own listener (inbound hooks)
        self.server_retry_at = 0.0  # a dead server is started again from then on
        self.forks: zygote.ForkServer | None = None  # forks the services (zygote.enabled)
        self.replicas = replica_counts()  # processes per service (BATON_REPLICAS)
        if zygote.enabled():
            zygote.title_ready()  # before the environment changes: forked children get titles
        if one_process and any(n > 1 for name, n in self.replicas.items() if name != "worker"):
            raise EmbeddedError(
                "--one-process runs one of each service; replicas (BATON_REPLICAS, --replicas) "
                "are processes of their own: leave one of the two out"
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def owner_key_path(self) -> Path:
        return self.data_dir / "owner.key"

    def owner_key(self) -> str:
        """The default workspace's first owner key: made once, kept (0600) under the data folder,
        and registered by the gateway on every start (idempotent; a revoked key stays revoked)."""
        path = self.owner_key_path
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(mint_key() + "\n")
        return path.read_text().strip()

    def start(self) -> None:
        try:
            llm_prices()  # an installation setting the gateway reads on every figure
        except PricesInvalid as exc:
            raise EmbeddedError(str(exc)) from None
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                raise EmbeddedError(
                    f"port {self.port} is in use (another `baton up`?): stop it, or set BATON_HTTP_PORT"
                )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        if zygote.enabled():
            # What this process imports later anyway (PostgreSQL's readiness check, the link
            # `baton up` prints), imported before it forks: shared with its children then.
            import psycopg  # noqa: F401

            import baton_cli.client  # noqa: F401
        if zygote.enabled() and not self.one_process:  # it imports while the servers start
            self.forks = zygote.ForkServer(
                self.data_dir / "logs" / "fork-server.log", dict(os.environ)
            )
            self.forks.start(fork=True)  # before any key is made or read: nothing to carry
        env = dict(os.environ)
        if not env.get("NATS_URL"):
            names = Settings()
            conf, self.nats_keys = write_auth(
                auth_folder(self.data_dir), services(), names.subject_root, names.stream
            )
            # Listed before it starts: a Ctrl-C while it starts still stops it.
            tls = natstls.ensure(self.data_dir / "nats" / "tls") if natstls.enabled() else None
            nats = NatsServer(self.data_dir / "nats", config=conf, tls=tls)
            self.servers.append(nats)
            nats.start()
            env["NATS_URL"] = nats.url
            if tls:  # every process verifies the server against the private CA
                env["NATS_TLS_CA"] = str(tls.ca)
            self.log(f"  nats-server (JetStream) on {nats.url}, data in {nats.data_dir}")
            self.log(f"  every NATS connection authenticates: keys in {self.nats_keys.folder}")
        if not env.get("DATABASE_URL"):
            pg = PostgresServer(self.data_dir / "postgres")
            self.servers.append(pg)
            pg.start()
            env["DATABASE_URL"] = pg.url
            self.log(
                f"  PostgreSQL on {pg.public_url} (password in {pg.password_file}), "
                f"data in {pg.pgdata}"
            )
        env.update(BATON_DATA_DIR=str(self.data_dir), BATON_HTTP_PORT=str(self.port))
        env["BATON_BOOTSTRAP_KEY"] = self.owner_key()
        self._secrets_key(env)
        self.env = env
        if self.one_process:
            self._spawn(ONE_PROCESS)
        else:
            for name in services():
                for child in replicas(name, self.replicas):
                    self._spawn(child)
        self._write_runtime()

    def members(self, child: str) -> list[str]:
        """The services a child process runs: itself, or all of them for ``--one-process``."""
        if child != ONE_PROCESS:
            return [child]
        return [r for name in services() for r in replicas(name, self.replicas)]

    def _secrets_key(self, env: dict[str, str]) -> None:
        """The installation key that wraps every secret's data key: made once under the data
        folder (0600), unless the environment brings one. The old key's file exists only while
        ``baton secrets rotate`` runs; the services read both."""
        if env.get("BATON_SECRETS_KEY") or env.get("BATON_SECRETS_KEY_FILE"):
            return
        path = self.data_dir / "secrets.key"
        ensure_key_file(path)
        env["BATON_SECRETS_KEY_FILE"] = str(path)
        env["BATON_SECRETS_OLD_KEY_FILE"] = str(path.with_name(path.name + ".old"))

    def _spawn(self, name: str, restarts: int = 0) -> None:
        log = self.data_dir / "logs" / f"{name}.log"
        members = self.members(name)
        args = members if name == ONE_PROCESS else [name.partition("#")[0]]
        argv = [sys.executable, "-m", "baton_cli", "serve", *args]
        env = self._child_env(name, members)
        proc: subprocess.Popen[bytes] | zygote.Forked | None = None
        try:
            if self.forks is not None:
                proc = self.forks.spawn(name, argv, env, log)
            elif name == ONE_PROCESS and zygote.enabled():
                proc = zygote.fork_here(argv, env, log)
        except zygote.ForkServerError as exc:
            self.log(f"  {name}: not forked ({exc}); started afresh")
        if proc is None:
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
        self.children[name] = Child(name, proc, restarts=restarts)

    def _child_env(self, name: str, members: list[str]) -> dict[str, str]:
        """The environment of child ``name``, which serves ``members``."""
        env = dict(self.env)
        if "gateway" not in members:
            env.pop("BATON_BOOTSTRAP_KEY", None)  # only the gateway registers keys
        # every service answers /healthz, /readyz and /metrics
        ports = {m: self.health_ports.setdefault(m, free_port()) for m in members if m != "gateway"}
        if name == ONE_PROCESS:
            env["BATON_HEALTH_PORTS"] = json.dumps(ports)
            env.setdefault("BATON_DB_POOL_MIN", "1")  # idle connections are memory
        elif ports:
            env["BATON_HEALTH_PORT"] = str(ports[name])
        if self.replicas.get("gateway", 1) > 1 and name.startswith("gateway"):
            env["BATON_HTTP_REUSE_PORT"] = "1"  # the gateways share the API port
        if "webhook" in members:
            env["BATON_WEBHOOK_PORT"] = str(self._webhook_port())
        if self.nats_keys is not None:  # each service its own key, so its own permissions
            env["BATON_CONTROL_KEY_FILE"] = str(self.nats_keys.folder / "control.key")
            env.pop("BATON_NATS_NKEY", None)  # one process: each bus its role's (local_seed)
            if name != ONE_PROCESS:
                env["BATON_NATS_NKEY"] = str(self.nats_keys.seed_path(role_of(name)))
        return env

    def _webhook_port(self) -> int:
        """Fixed for this supervisor's life (a restarted service keeps its address):
        $BATON_WEBHOOK_PORT when set, else a free one."""
        if self.webhook_port is None:
            self.webhook_port = int(self.env.get("BATON_WEBHOOK_PORT") or free_port())
            self.log(f"  webhooks in on http://127.0.0.1:{self.webhook_port}/hooks/<endpoint>")
        return self.webhook_port

    def _write_runtime(self) -> None:
        info = {
            "gateway": self.url,
            "nats_url": self.env["NATS_URL"],
            "nats_tls_ca": self.env.get("NATS_TLS_CA"),
            # the operator's key, for tools beside the engine (the CLI, tests, the bench)
            "nats_nkey": str(self.nats_keys.seed_path(ADMIN)) if self.nats_keys else None,
            "database_url": self.env["DATABASE_URL"],
            "secrets_key_file": self.env.get("BATON_SECRETS_KEY_FILE"),
            "pids": {n: c.proc.pid for n, c in self.children.items()},
            "servers": {_server_name(s): s.proc.pid for s in self.servers if s.proc},
            "supervisor": os.getpid(),
            "fork_server": self.forks.pid if self.forks else None,
            "health_ports": self.health_ports,
            "webhook": f"http://127.0.0.1:{self.webhook_port}" if self.webhook_port else None,
        }
        # Written whole then renamed: a reader (the CLI, a test) never sees a half-written file.
        # 0600 from the start: the database URL in it carries the password.
        path = self.data_dir / "runtime.json"
        partial = path.with_suffix(".json.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(info, indent=2))
        partial.replace(path)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.supervise()
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise EmbeddedError(f"the gateway did not become ready; see {self.data_dir / 'logs'}")

    def supervise(self) -> None:
        """Restart any service that exited (with a short backoff if it keeps dying)."""
        self._restart_servers()
        for name, child in list(self.children.items()):
            code = child.proc.poll()
            if code is None or self.stopping:
                continue
            quick = time.monotonic() - child.started < 5
            delay = min(10.0, 0.5 * 2**child.restarts) if quick else 0.2
            self.log(f"  {name} exited ({code}); restarting in {delay:.1f}s")
            # It may have died binding its health port (another process took it since it was
            # picked): a service binds it last in its start, tens of seconds in on a busy
            # machine, so not only a quick exit. Each start gets a port free now.
            for member in self.members(name):
                self.health_ports.pop(member, None)
            time.sleep(delay)
            self._spawn(name, child.restarts + 1 if quick else 0)
            self._write_runtime()

    def _restart_servers(self) -> None:
        """A private server that died (a crash, a kill) comes back on its port with its data;
        the services reconnect. PostgreSQL may refuse while the dead one's backends still hold
        its shared memory: then it is tried again a moment later."""
        dead = [s for s in self.servers if s.proc is not None and s.proc.poll() is not None]
        if not dead or self.stopping or time.monotonic() < self.server_retry_at:
            return
        for server in dead:
            name = _server_name(server)
            self.log(
                f"  {name} exited ({server.proc.returncode if server.proc else '?'}); restarting"
            )
            try:
                server.start()
            except EmbeddedError as exc:
                self.log(f"  {name} did not start again yet: {str(exc)[:200]}")
                self.server_retry_at = time.monotonic() + 1.0
                return
        self._write_runtime()

    def stop(self) -> None:
        self.stopping = True
        for child in self.children.values():
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in self.children.values():
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"  {child.name} did not stop within 30s: killed")
                child.proc.kill()
                child.proc.wait()
        if self.forks is not None:
            self.forks.stop()
        # Only now, with every client gone, the servers: no service sees its bus or database
        # go away under it.
        for server in reversed(self.servers):
            server.stop()
        if self.children:  # ours to remove only if this supervisor wrote it
            (self.data_dir / "runtime.json").unlink(missing_ok=True)


def _server_name(server: NatsServer | PostgresServer) -> str:
    return "nats-server" if isinstance(server, NatsServer) else "postgres"
