"""Giving back the C heap's free memory after a burst (issue 32: waiting at scale).

glibc keeps the pages a burst of work freed (batches of 500 messages, their decoded events and
rows) for the next allocation instead of returning them to the system, so a service's memory
stays at its high-water mark while it waits. ``malloc_trim(0)`` returns the free pages (at the
top of the heap and, since glibc 2.8, inside it). It costs a walk of the heap (a few ms), so it
runs after bursts, not after every batch: when a consumer has caught up with its stream and at
least ``TRIM_AFTER`` messages went through the process since the last trim; and, for what
no consumer sees (the gateway's requests, the timer loop, the direct hand-overs, a burst that
ended within ``TRIM_GAP_S`` of the last trim), when, since the last trim, the process's
resident memory or the heap's free bytes grew by ``TRIM_GROWTH`` (``keep_trimmed``: a read of
``/proc/self/statm`` and glibc's ``mallinfo2`` every ``TRIM_CHECK_S``; a trim only after
growth, so an idle process never walks its heap). Both are needed: a burst that ends frees
memory without growing the resident size (only the free bytes say so), and memory taken again
from free chunks and freed again leaves the free bytes where they were (only the resident size
says so).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

TRIM_AFTER = 1000  # messages handled in this process since the last trim
TRIM_GAP_S = 5.0  # and never more often than this
TRIM_CHECK_S = 5.0  # how often keep_trimmed looks at the resident size
TRIM_GROWTH = 4 << 20  # bytes of growth (resident, or free in the heap) that call for a trim
# glibc's mallopt: blocks from this size are mapped on their own and unmapped when freed, always
# (by default the threshold rises to the largest block freed, up to 32 MB, after which a burst's
# large buffers stay in the heap between small ones that pin them); and at most this many arenas
# (8 per core by default: each thread that allocates, e.g. ``asyncio.to_thread``'s, fragments
# one of its own).
MMAP_THRESHOLD = 128 << 10
ARENA_MAX = 2
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8

_libc: Any = None
_handled = 0
_trimmed_at = 0.0
_keeping = False  # keep_trimmed runs in this process
_mark: tuple[int, int] | None = None  # (resident, free in the heap) just after the last trim
_mallinfo2: Any = None


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, from the symbols already in this process (``CDLL(None)``).
    Not ``ctypes.util.find_library("c")``: that runs ``ldconfig -p`` and reads its output to the
    end, a child process and a blocking read on the event loop, in the last step of a service's
    start (``tune_gc``) where nothing may wait."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                _libc = ctypes.CDLL(None).malloc_trim
            except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
                pass
    return _libc


def handled(count: int) -> None:
    """``count`` messages were handled; a burst's free memory is given back once its stream is
    caught up (``caught_up``)."""
    global _handled
    _handled += count


def caught_up() -> bool:
    """A consumer has nothing more to fetch: trim if a burst went through since the last time.
    True when it trimmed."""
    now = time.monotonic()
    if _handled < TRIM_AFTER or now - _trimmed_at < TRIM_GAP_S:
        return False
    trim = _malloc_trim()
    if not trim:
        return False
    trim(0)
    _trimmed()
    return True


def tune_malloc() -> bool:
    """Set glibc's thresholds (``MMAP_THRESHOLD``, ``ARENA_MAX``) for this process, unless the
    environment sets them (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``). Issue 32: the
    gateway kept 24 MB free in its heaps after 40 batch submissions, 5 MB with these. True when
    set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    done = False
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if "MALLOC_ARENA_MAX" not in os.environ:
        done = bool(mallopt(_M_ARENA_MAX, ARENA_MAX)) or done
    return done


def trim_now() -> None:
    """Give back what start-up freed (the imports' and connections' temporary memory)."""
    if trim := _malloc_trim():
        trim(0)
    _trimmed()


def trim_if_grown() -> bool:
    """Trim if the resident size or the heap's free bytes grew by ``TRIM_GROWTH`` since the last
    trim (what is free goes back; what is live stays, in the new mark). True when it trimmed."""
    global _mark
    rss, free = resident_bytes(), free_bytes()
    if _mark is None or (rss <= _mark[0] and free <= _mark[1]):
        _mark = (rss, free) if _mark is None else (min(rss, _mark[0]), min(free, _mark[1]))
        return False
    if max(rss - _mark[0], free - _mark[1]) < TRIM_GROWTH or not (trim := _malloc_trim()):
        return False
    trim(0)
    _trimmed()
    return True


def _trimmed() -> None:
    global _mark, _handled, _trimmed_at
    _handled, _trimmed_at = 0, time.monotonic()
    _mark = (resident_bytes(), free_bytes())


async def keep_trimmed(every_s: float = TRIM_CHECK_S) -> None:
    """Run for the life of a service: ``trim_if_grown`` every ``every_s`` (one loop per process,
    however many services it runs)."""
    import asyncio

    global _keeping
    if _keeping:
        return
    _keeping = True
    try:
        while True:
            await asyncio.sleep(every_s)
            trim_if_grown()
    finally:
        _keeping = False


def free_bytes() -> int:
    """Bytes free in the C heap's arenas (glibc's ``mallinfo2``; 0 elsewhere)."""
    global _mallinfo2
    if _mallinfo2 is None:
        _mallinfo2 = False
        try:
            fn = ctypes.CDLL(None).mallinfo2
            fn.restype = _Mallinfo2
            _mallinfo2 = fn
        except (OSError, AttributeError):  # not glibc, or glibc before 2.33
            pass
    return int(_mallinfo2().fordblks) if _mallinfo2 else 0


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


def resident_bytes() -> int:
    """This process's resident set size (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


# --- what a process holds: a dump on SIGUSR2 (BATON_HEAP_DUMP=<folder>), for benchmarks ----------


def install_dump(name: str) -> None:
    """With ``BATON_HEAP_DUMP`` set to a folder: trace allocations from now on (tracemalloc) and
    write what the process holds there on each SIGUSR2: live objects by type, the allocations
    still held by where they were made, the C heap's figures. A diagnostic, off by default (the
    tracing costs time and memory)."""
    folder = os.environ.get("BATON_HEAP_DUMP")
    if not folder:
        return
    import tracemalloc

    if frames := int(os.environ.get("BATON_HEAP_DUMP_FRAMES", "8")):  # 0: no tracing
        tracemalloc.start(frames)
    seq = iter(range(1_000_000))
    signal.signal(signal.SIGUSR2, lambda *_: _dump(Path(folder), name, next(seq)))


def _dump(folder: Path, name: str, n: int) -> None:
    import collections
    import gc
    import tracemalloc

    gc.collect()
    lines = [f"# {name} pid {os.getpid()} dump {n}", f"rss_kb {_rss_kb()}"]
    lines += [f"smaps {_smaps()}", f"mallinfo2 {_mallinfo()}", f"pymalloc {_pymalloc()}"]
    if os.environ.get("BATON_HEAP_DUMP_TRIM") and (trim := _malloc_trim()):  # what a trim frees
        before = resident_bytes()
        trim(0)
        lines.append(f"trim_freed_kb {(before - resident_bytes()) // 1024}")
    lines.append(f"allocated_blocks {sys.getallocatedblocks()}")
    lines.append(f"gc_objects {len(gc.get_objects())} frozen {gc.get_freeze_count()}")
    counts = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    lines += ["", "## live objects by type (tracked by gc)"]
    lines += [f"{c:>9} {t}" for t, c in counts.most_common(40)]
    for wanted in filter(None, os.environ.get("BATON_HEAP_DUMP_HOLDERS", "").split(",")):
        lines += ["", f"## what holds a {wanted}", *_holders(wanted)]
    if not tracemalloc.is_tracing():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}-{os.getpid()}-{n}.txt").write_text("\n".join(lines) + "\n")
        return
    snap = tracemalloc.take_snapshot()
    traced, peak = tracemalloc.get_traced_memory()
    lines += ["", f"## tracemalloc: {traced / 1e6:.1f} MB held, peak {peak / 1e6:.1f} MB"]
    for stat in snap.statistics("traceback")[:25]:
        lines.append(f"{stat.size / 1e6:8.2f} MB {stat.count:>8} blocks")
        lines += [f"      {frame}" for frame in stat.traceback.format()[-12:]]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-{os.getpid()}-{n}.txt").write_text("\n".join(lines) + "\n")


def _holders(type_name: str, depth: int = 6) -> list[str]:
    """A chain of referrers of one live object of ``type_name``, up to ``depth`` levels. It
    ends early at an object that ``gc.freeze`` moved out of the collector's sight (a service's
    application and its consumers): ``gc.get_referrers`` does not search those."""
    import gc

    found = [o for o in gc.get_objects() if type(o).__qualname__ == type_name]
    if not found:
        return ["(none)"]
    lines: list[str] = []
    obj, seen = found[len(found) // 2], {id(found)}
    for level in range(depth):
        refs = [r for r in gc.get_referrers(obj) if id(r) not in seen and r is not lines]
        seen.update([id(refs), *(id(r) for r in refs)])
        lines += [f"{'  ' * level}<- {type(r).__qualname__}: {_brief(r)}" for r in refs[:4]]
        if not refs:
            break
        obj = refs[0]
    return lines


def _brief(obj: Any) -> str:
    if isinstance(obj, dict):
        return f"{len(obj)} keys: {list(obj)[:5]!r}"[:300]
    if isinstance(obj, list | tuple | set):
        return f"{len(obj)} items"
    return repr(obj)[:300]


def _smaps() -> str:
    with open("/proc/self/smaps_rollup") as f:
        rows = dict(line.split(":", 1) for line in f if ":" in line and "-" not in line[:12])
    keys = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty")
    return " ".join(f"{k}={rows[k].split()[0]}" for k in keys if k in rows)


def _mallinfo() -> str:
    free_bytes()  # binds mallinfo2 if the C library has it
    if not _mallinfo2:
        return "n/a"
    m = _mallinfo2()
    return (f"arena_kb={m.arena // 1024} mmapped_kb={m.hblkhd // 1024} "
            f"in_use_kb={m.uordblks // 1024} free_kb={m.fordblks // 1024} "
            f"top_free_kb={m.keepcost // 1024}")  # fmt: skip


def _pymalloc() -> str:
    """pymalloc's arenas: how many, and how much of them live objects use."""
    import tempfile

    with tempfile.TemporaryFile(mode="w+") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read()
    keep = ("# arenas allocated current", "# arenas highwater", "# bytes in allocated blocks",
            "# bytes in available blocks")  # fmt: skip
    return (
        "; ".join(" ".join(line.split()) for line in text.splitlines() if line.startswith(keep))
        + "; "
        + " ".join(next((x for x in text.splitlines() if "unused pools" in x), "").split())
    )


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
