"""Giving back the C heap's free memory after a burst (issue 32: waiting at scale).

glibc keeps the pages a burst of work freed (batches of 500 messages, their decoded events and
rows) for the next allocation instead of returning them to the system, so a service's memory
stays at its high-water mark while it waits. ``malloc_trim(0)`` returns the free pages (at the
top of the heap and, since glibc 2.8, inside it). It costs a walk of the heap (a few ms), so it
runs after bursts, not after every batch: when a consumer has caught up with its stream and at
least ``TRIM_AFTER`` messages went through the process since the last trim.
"""

from __future__ import annotations

import ctypes
import sys
import time
from typing import Any

TRIM_AFTER = 1000  # messages handled in this process since the last trim
TRIM_GAP_S = 5.0  # and never more often than this

_libc: Any = None
_handled = 0
_trimmed_at = 0.0


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
    global _handled, _trimmed_at
    now = time.monotonic()
    if _handled < TRIM_AFTER or now - _trimmed_at < TRIM_GAP_S:
        return False
    trim = _malloc_trim()
    if not trim:
        return False
    _handled, _trimmed_at = 0, now
    trim(0)
    return True


def trim_now() -> None:
    """Give back what start-up freed (the imports' and connections' temporary memory)."""
    if trim := _malloc_trim():
        trim(0)
