"""`make bench-idle`: what an idle engine costs — memory and CPU of every process of `baton up`.

Starts `baton up` on private servers and ports (a fresh data folder), waits until it is ready and
has settled, then samples every process of its tree (the services, nats-server, PostgreSQL) over a
window: resident memory (RSS, and PSS, which shares the pages processes have in common fairly)
and CPU time used per second of wall time. Nothing is submitted: the figures are the floor a
laptop or a cluster pays for an engine that waits. Both modes, one after the other: a process
per service, then `baton up --one-process`. Targets (issue 32): idle CPU ≤ 10 ms per second,
total memory ≤ 500 MB, and ≤ 250 MB in one process. Figures go to docs/benchmarks.md between
their own markers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from baton_common.embedded import free_port
from baton_common.testing import stop, wait_ready

from bench.run import ROOT, fmt

TICK = os.sysconf("SC_CLK_TCK")
BEGIN, END = "<!-- bench-idle:begin -->", "<!-- bench-idle:end -->"


def tree(root: int) -> dict[int, str]:
    """{pid: name} of ``root`` and every process below it."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                head, rest = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)
                parents[int(d)] = int(rest.split()[1])
                names[int(d)] = head.split("(", 1)[1]
            except (OSError, IndexError, ValueError):
                continue
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = role(pid, names.get(pid, "?"))
        todo += [p for p, pp in parents.items() if pp == pid]
    return out


def role(pid: int, name: str) -> str:
    """A service's name from its command line (`baton serve executor` → executor). A forked
    service shows it as one string (its process title): split on spaces too."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return name
    words = argv.decode(errors="replace").split()
    if "baton_cli.zygote" in words:
        return "fork server"
    if "serve" in words and words.index("serve") + 1 < len(words):
        served = words[words.index("serve") + 1 :]
        return served[0] if len(served) == 1 else "services (one process)"
    if "up" in words:
        return "baton up (supervisor)"
    return name


def cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def start(workdir: Path, one_process: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env.update(BATON_DATA_DIR=str(workdir), BATON_HTTP_PORT=str(port), OTEL_SDK_DISABLED="true")
    log = open(workdir / "up.log", "wb")
    mode = ["--one-process"] if one_process else []
    proc = subprocess.Popen([str(Path(sys.executable).parent / "baton"), "up", *mode], env=env,
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, timeout=120)
    except RuntimeError as exc:
        sys.exit(f"{exc}: {(workdir / 'up.log').read_text()[-1500:]}")
    return proc, url


def measure(
    settle_s: float, window_s: float, one_process: bool = False
) -> list[tuple[str, float, float, float]]:
    """[(process, RSS MB, PSS MB, CPU ms per s)] of an idle engine, by process, largest first."""
    workdir = Path(tempfile.mkdtemp(prefix="baton-idle-"))
    proc, _ = start(workdir, one_process)
    try:
        time.sleep(settle_s)
        before = {pid: cpu_s(pid) for pid in tree(proc.pid)}
        t0 = time.monotonic()
        time.sleep(window_s)
        took = time.monotonic() - t0
        rows: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        for pid, name in tree(proc.pid).items():
            label = "postgres" if name.startswith("postgres") else name
            rss, pss = memory_kb(pid)
            used = cpu_s(pid) - before.get(pid, 0.0)
            row = rows[label]
            row[0] += rss / 1024
            row[1] += pss / 1024
            row[2] += used * 1000 / took
        return sorted(((k, *v) for k, v in rows.items()), key=lambda r: -r[2])
    finally:
        stop(proc)


def report(
    rows: list[tuple[str, float, float, float]], window_s: float, one_process: bool = False
) -> str:
    rss = sum(r[1] for r in rows)
    pss = sum(r[2] for r in rows)
    cpu = sum(r[3] for r in rows)
    limit = 250 if one_process else 500
    command = "baton up --one-process" if one_process else "baton up"
    lines = [
        f"Idle `{command}` ({len(rows)} kinds of process; CPU over {window_s:.0f} s after it "
        f"settled; {time.strftime('%Y-%m-%d %H:%M')} UTC, {os.cpu_count()} cores):",
        "",
        "| process | RSS MB | PSS MB | CPU ms per s |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {n} | {fmt(r, '.0f')} | {fmt(p, '.0f')} | {fmt(c, '.1f')} |" for n, r, p, c in rows
    ]
    lines.append(f"| **total** | **{rss:.0f}** | **{pss:.0f}** | **{cpu:.1f}** |")
    lines += [
        "",
        "| target | figure | met |",
        "|---|---|---|",
        f"| idle CPU ≤ 10 ms per second | {cpu:.1f} ms/s | {'yes' if cpu <= 10 else '**no**'} |",
        f"| total memory ≤ {limit} MB (PSS) | {pss:.0f} MB (RSS {rss:.0f}) "
        f"| {'yes' if pss <= limit else '**no**'} |",
    ]
    return "\n".join(lines)


def write_doc(text: str) -> None:
    doc = ROOT / "docs" / "benchmarks.md"
    body = doc.read_text()
    if BEGIN not in body:
        body += f"\n## Idle footprint\n\n{BEGIN}\n{END}\n"
    head, rest = body.split(BEGIN, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=30, help="seconds after ready")
    parser.add_argument("--window", type=float, default=30, help="seconds of CPU counted")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--mode", choices=("both", "separate", "one"), default="both", help="which `baton up`"
    )
    args = parser.parse_args()
    modes = {"both": (False, True), "separate": (False,), "one": (True,)}[args.mode]
    text = "\n\n".join(
        report(measure(args.settle, args.window, one), args.window, one) for one in modes
    )
    print(text)
    if not args.no_write:
        write_doc(text)


if __name__ == "__main__":
    main()
