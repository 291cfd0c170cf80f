"""The fork server of ``baton up`` (a zygote, as Android's or gunicorn's ``--preload``).

Each service of ``baton up`` is a process of its own. Started as ``python -m baton_cli serve
<name>``, every one of them imported the same interpreter state again (pydantic and the event
contracts, psycopg, nats-py, OpenTelemetry, FastAPI…: 50 to 90 MB each, issue 32). Instead, the
supervisor starts this one process early; it imports what the services import, freezes the
garbage collector's view of it (``gc.freeze``: a collection then never writes to those objects'
pages) and forks each service from itself. The pages that the services do not write stay shared
copy-on-write, and PSS splits them between the processes. Its first start is a fork of the
supervisor, before the supervisor makes or reads any key (its pages are shared too); a later one
(after a crash) is a fresh ``python -m baton_cli.zygote``, which carries nothing the supervisor
learnt since. ``--one-process`` forks its one child from the supervisor (``fork_here``).

A forked service is still its own process, as before: its own pid and session, its own log file
for stdout and stderr, its own environment (the supervisor sends it whole), its command line
shown as ``… -m baton_cli serve <name>`` (``setproctitle``), default signal handlers, no signal
blocked (whatever mask the supervisor was started with) and a fresh event loop; kill -9 of it
kills only it. The fork server reaps its children and tells the
supervisor each one's exit status, which restarts a service by asking for another fork. The
fork server has no thread and no event loop when it forks (checked: a forked thread would be a
lock held forever), and it exits when the supervisor goes away (its socket closes).

The protocol, JSON lines over a socket pair: the supervisor sends ``{"name", "argv", "env",
"log"}``; the fork server answers ``{"pid"}`` (or ``{"error"}``) and, whenever a child ends,
``{"exited": pid, "code": …}`` (negative: the signal that killed it, as ``Popen.returncode``).
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

FD_VAR = "BATON_FORK_SERVER_FD"  # the fork server's end of the socket pair
ENABLE_VAR = "BATON_FORK_SERVER"  # 0: each service started afresh (`python -m baton_cli serve`)

# What every service imports, beyond the services' own modules (loaded through their entry
# points): what they import later, lazily, on their way to serving.
PRELOAD = (
    "uvloop",
    "baton_cli.serve",
    "baton_common.service",
    "baton_common.together",
    "psycopg",
    "psycopg_pool",
    "nats",
    "opentelemetry.sdk.trace",
    "uvicorn",
    "fastapi",
)


def enabled() -> bool:
    """Whether ``baton up`` forks its services: on Linux (fork after imports is safe there; macOS
    frameworks are not fork-safe), unless ``BATON_FORK_SERVER=0``. A process per service: from
    the fork server; ``--one-process``: the one child from the supervisor itself (``fork_here``:
    a fork server would hold a second copy of what that one child writes to)."""
    if not sys.platform.startswith("linux"):
        return False
    return os.environ.get(ENABLE_VAR, "1").strip().lower() not in {"0", "false", "off", "no"}


# --- the supervisor's end -------------------------------------------------------------------


class ForkServerError(RuntimeError):
    """The fork server could not start a service."""


class ForkServer:
    """The supervisor's handle on its fork server: start it, ask it for services, hear exits."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log, self.env = log, env
        self.proc: subprocess.Popen[bytes] | Forked | None = None
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.exits: dict[int, int] = {}
        self.generation = 0  # one more each start: a child of an earlier one is not reported

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, fork: bool = False) -> None:
        """Start it (it imports while the supervisor goes on: the first fork waits for that).
        ``fork``: forked from this process (the supervisor, before it holds any key: the fork
        server and every service then share the supervisor's pages too), else started afresh
        (a fork server started again must not carry what the supervisor learnt since)."""
        ours, theirs = socket.socketpair()
        # A supervisor with threads (an engine run from a benchmark's thread) does not fork.
        if fork and threading.active_count() == 1:
            fd, log = theirs.fileno(), self.log
            self.proc = _fork_child(lambda: _forked_main(fd, log), keep=fd)
        else:
            self._exec(theirs)
        theirs.close()
        self.sock, self.buffer = ours, b""
        self.generation += 1

    def _exec(self, theirs: socket.socket) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "baton_cli.zygote"],
                env={**self.env, FD_VAR: str(theirs.fileno())},
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the supervisor, not this
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and self.sock is not None

    def spawn(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> Forked:
        """Fork the service ``name``, shown as ``argv``, with ``env``, writing to ``log``."""
        if not self.alive():
            self.stop()
            self.start()
        assert self.sock is not None
        request = {"name": name, "argv": argv, "env": env, "log": str(log)}
        try:
            self.sock.sendall(json.dumps(request).encode() + b"\n")
            while True:
                for message in self._read(block=True):
                    if "pid" in message:
                        return Forked(self, int(message["pid"]), self.generation)
                    if "error" in message:
                        raise ForkServerError(str(message["error"]))
        except OSError as exc:
            self._lost()
            raise ForkServerError(f"the fork server is gone ({exc})") from None

    def exit_code(self, pid: int, generation: int) -> int | None:
        """The exit status of child ``pid`` (forked by start number ``generation``) once it
        ended, else None. A child of a fork server that died is looked for by pid instead."""
        if pid not in self.exits and self.sock is not None:
            try:
                list(self._read(block=False))
            except OSError:
                self._lost()
        if pid in self.exits:
            return self.exits[pid]
        if self.sock is None or generation != self.generation:  # no one reports for it now
            return _orphan_exit(pid)
        return None

    def _read(self, block: bool) -> Any:
        """The messages that arrived; with ``block``, waits for at least one. Exits are kept."""
        assert self.sock is not None
        # Lines left in the buffer when ``spawn`` took its answer (an exit that came in the
        # same read, after it): read before waiting for more, else they wait for the next
        # message, which may never come.
        for message in self._lines():
            yield message
            block = False
        while True:
            ready, _, _ = select.select([self.sock], [], [], None if block else 0)
            if not ready:
                return
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionResetError("the fork server closed its socket")
            self.buffer += data
            for message in self._lines():
                yield message
            block = False

    def _lines(self) -> Any:
        """The complete lines of the buffer: exits are kept, other messages yielded."""
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            message = json.loads(line)
            if "exited" in message:
                self.exits[int(message["exited"])] = int(message["code"])
            else:
                yield message

    def _lost(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def stop(self, timeout: float = 10.0) -> None:
        """Close its socket (it exits on that); kill it if it lingers."""
        self._lost()
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _orphan_exit(pid: int) -> int | None:
    """The status of a process whose parent (a fork server) died: None while it runs. Its new
    parent reaps it; when that is this process (pid 1 of a container, a subreaper), here."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return -signal.SIGKILL  # gone, its status unknown
    except PermissionError:
        pass
    return None


class Forked:
    """A forked service, handled as ``subprocess.Popen`` handles its processes; ``server``: the
    fork server that forked it, None for a child of this process (``fork_here``)."""

    def __init__(self, server: ForkServer | None, pid: int, generation: int = 0) -> None:
        self.server, self.pid, self.generation = server, pid, generation
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            if self.server is None:
                self.returncode = _orphan_exit(self.pid)  # ours: waitpid answers
            else:
                self.returncode = self.server.exit_code(self.pid, self.generation)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.05)
        return code

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# --- the fork server's end ------------------------------------------------------------------


def preload() -> None:
    """Import what the services import: their entry points, then what they load later."""
    from importlib import import_module
    from importlib.metadata import entry_points

    for entry in entry_points(group="baton.services"):
        try:
            entry.load()
        except Exception as exc:  # the service's own process will say why, when it starts
            _say(f"{entry.name} not preloaded: {exc!r}", logging.WARNING)
    for module in PRELOAD:
        try:
            import_module(module)
        except ImportError:
            pass


def serve(sock: socket.socket) -> dict[str, Any]:
    """Fork a child for each request until the supervisor closes the socket; returns only in a
    forked child, with its request."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select below
    buffer = b""
    while True:
        ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        if wake_r in ready:
            _drain(wake_r)
            _reap(sock)
        if sock.fileno() not in ready:
            continue
        data = sock.recv(65536)
        if not data:  # the supervisor is gone (stopped, or killed): so are we
            sys.exit(0)
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            pid = _fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                for fd in (wake_r, wake_w):
                    os.close(fd)
                sock.close()
                return dict(request)
            _send(sock, {"pid": pid, "name": request["name"]})


def _fork() -> int:
    if threading.active_count() != 1:  # a thread forked is a lock that may stay held forever
        raise SystemExit(f"fork server: {threading.active_count()} threads, refusing to fork")
    gc.freeze()  # what was allocated since: shared too, and never touched by a collection
    return os.fork()


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except OSError:
        sys.exit(0)  # the supervisor is gone


def fork_here(argv: list[str], env: dict[str, str], log: Path) -> Forked:
    """Fork the service ``argv`` from this process (the supervisor of ``--one-process``, whose
    pages its one child then shares)."""
    request = {"argv": argv, "env": env, "log": str(log)}
    return _fork_child(lambda: become(request))


def _fork_child(run: Callable[[], None], keep: int | None = None) -> Forked:
    """Fork ``run`` from this process, the supervisor (it sets its own signal mask). The
    child never returns: it leaves with ``os._exit`` (the supervisor's frames below it are not
    its own), having run the exit handlers registered since the fork. ``keep``: a file it keeps
    (every other one of the supervisor's is closed)."""
    if threading.active_count() != 1:
        raise ForkServerError(f"{threading.active_count()} threads run in the supervisor")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    gc.freeze()  # the child's collections then never write to the pages it shares with us
    # No signal handler of the supervisor may run in the child before its own are set.
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return Forked(None, pid)
    code: object = 1
    try:
        atexit._clear()
        signal.set_wakeup_fd(-1)
        top = os.sysconf("SC_OPEN_MAX")
        for low, high in ((3, keep), ((keep or 2) + 1, top)) if keep else ((3, top),):
            os.closerange(low, high)  # the supervisor's files, its servers' pipes
        run()
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
    finally:
        atexit._run_exitfuncs()
        logging.shutdown()
        if isinstance(code, str):
            print(code, file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def become(request: dict[str, Any]) -> None:
    """In a forked child: turn into the process ``python -m baton_cli serve …`` would have been,
    then serve (``baton_cli.main`` exits with the service's status). Its signal mask is empty
    once its handlers are its own (the fork server's or supervisor's ones must not run in it)."""
    os.setsid()  # its own session, as `start_new_session`: a kill -9 of it takes only it
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    os.close(null)
    for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # No signal blocked, whatever mask the supervisor was started with (a fresh `python -m`
    # would inherit it): a service that starts with SIGTERM blocked cannot be stopped.
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    os.environ.clear()
    os.environ.update(request["env"])
    argv: list[str] = request["argv"]
    _title(argv)
    serve_at = argv.index("baton_cli") + 1 if "baton_cli" in argv else 1
    sys.argv = [str(Path(__file__).with_name("__main__.py")), *argv[serve_at:]]
    import random

    random.seed()  # done by `random` itself after a fork too; a service's randomness is its own
    runpy.run_module("baton_cli", run_name="__main__")  # as `python -m baton_cli …` does


def _title(argv: list[str]) -> None:
    """The command line shown for this process (ps, /proc/<pid>/cmdline): what it would have been
    started as."""
    try:
        from setproctitle import setproctitle, setthreadtitle
    except ImportError:
        return
    setproctitle(" ".join(argv))
    setthreadtitle(Path(sys.executable).name)  # its short name: the interpreter's, as before


def title_ready() -> None:
    """setproctitle finds the command line's memory by walking the environment from its start:
    it must look before the environment changes (a child's is replaced)."""
    try:
        from setproctitle import getproctitle, setthreadtitle
    except ImportError:
        return
    getproctitle()
    setthreadtitle(Path(sys.executable).name)  # its set-up renamed it after its folder


def _forked_main(fd: int, log: Path) -> None:
    """The fork server forked from the supervisor: its own session and log, then as ``main``."""
    os.setsid()
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    for target, source in ((0, null), (1, out), (2, out)):
        os.dup2(source, target)
    os.close(out)
    os.close(null)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())  # as in `main`: SIGCHLD must reach it
    _title([sys.executable, "-m", "baton_cli.zygote"])
    _serve_forks(socket.socket(fileno=fd))


def main() -> None:
    title_ready()
    sock = socket.socket(fileno=int(os.environ.pop(FD_VAR)))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopped by its supervisor, not by a Ctrl-C
    # A mask inherited from the supervisor's own start would hide SIGCHLD (no exit reported,
    # a stop waits for ever) and reach every child.
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    _serve_forks(sock)


def _serve_forks(sock: socket.socket) -> None:
    started = time.monotonic()
    preload()
    gc.collect()
    gc.freeze()
    _say(
        f"fork server (pid {os.getpid()}): {len(sys.modules)} modules imported in "
        f"{time.monotonic() - started:.1f}s"
    )
    become(serve(sock))


def _say(message: str, level: int = logging.INFO) -> None:
    """One line of the fork server's log, a JSON record with the keys every service's has (its
    log sits beside theirs); no handler is installed: the services it forks set up their own."""
    from baton_common.logs import ContextFilter, JsonFormatter

    record = logging.LogRecord("baton_cli.zygote", level, __file__, 0, message, None, None)
    ContextFilter("fork-server").filter(record)
    print(JsonFormatter().format(record), flush=True)


if __name__ == "__main__":
    main()
