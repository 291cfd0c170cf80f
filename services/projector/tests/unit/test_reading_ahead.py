"""A rebuild reads the stores on a thread of its own, a chunk or two ahead of the writes
(``catchup.ahead``): every chunk comes, in order; an error in the reading is raised to the
rebuild; a rebuild that stops early (a write failed) stops the reading too. And the text a
rebuild writes with ``COPY`` keeps what its format would otherwise read as separators."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from baton_projector.bulk import copy_text
from baton_projector.catchup import ahead


def test_every_item_comes_in_order_from_another_thread() -> None:
    threads: set[str] = set()

    def produce() -> Iterator[int]:
        for i in range(50):
            threads.add(threading.current_thread().name)
            yield i

    assert list(ahead(produce())) == list(range(50))
    assert threads == {"catch-up reader"}


def test_an_error_while_reading_is_raised_to_the_caller() -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise ConnectionError("the store went away")

    got = []
    with pytest.raises(ConnectionError, match="went away"):
        for item in ahead(produce()):
            got.append(item)
    assert got == [1]


def test_a_caller_that_stops_early_stops_the_reading() -> None:
    closed = threading.Event()

    def produce() -> Iterator[int]:
        try:
            yield from range(1_000_000)
        finally:
            closed.set()

    items = ahead(produce(), depth=1)
    assert next(items) == 0
    items.close()  # as when a write fails and the loop is left
    assert closed.wait(5)
    assert not any(t.name == "catch-up reader" for t in threading.enumerate())


def test_copy_text_escapes_its_separators_and_leaves_the_rest() -> None:
    assert copy_text('{"a": "b"}') == '{"a": "b"}'
    assert copy_text('{"a": "x\\\\y\\n"}') == '{"a": "x\\\\\\\\y\\\\n"}'
    assert copy_text("tab\there\nline\rend\\") == "tab\\there\\nline\\rend\\\\"
