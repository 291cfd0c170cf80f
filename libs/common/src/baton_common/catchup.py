"""Reading the stores' logs after given positions: what a consumer reads when the stream no
longer holds what it missed (``BATON_STREAM_MAX_AGE``, ``BATON_STREAM_MAX_BYTES``).

Every service's store is a table ``<store>_events`` in the installation's one schema, and every
message a relay publishes says where its event stands in its store's log (``Baton-Source:
<store>:<position>``). A consumer that knows the last position it applied of each store can read
every log after it, the stores merged in time order, and apply what it was never given.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from baton_common.bus import source_of
from baton_common.busauth import subject_matches
from baton_common.consumer import Delivery
from baton_common.contracts import registry
from baton_common.events import Event, EventDecodeError

Entry = tuple[datetime, str, int, Event]  # when, store, position, event
Runs = dict[str, list[list[int]]]  # store -> the [first, last] runs of its positions delivered
END = 2**63 - 1  # past any position


def stores(conn: psycopg.Connection[Any], schema: str) -> list[str]:
    """Every service's store in the schema: the tables with the event store's columns."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = %s"
        " AND table_name LIKE '%%\\_events' AND column_name IN ('notification_id', 'state',"
        " 'originator_version') GROUP BY table_name HAVING count(*) = 3 ORDER BY table_name",
        (schema,),
    ).fetchall()
    return [str(r[0]).removesuffix("_events") for r in rows]


def read_after(
    conn: psycopg.Connection[Any],
    schema: str,
    after: Mapping[str, int],
    batch: int,
    delivered: Runs | None = None,
) -> Iterator[list[Entry]]:
    """Every store's events after ``after`` (a store not in it from its start), less what
    ``delivered`` says the stream gave already, merged in time order, ``batch`` at a time."""
    logs = [
        _log(conn, schema, s, gaps((delivered or {}).get(s, ()), after.get(s, 0)), batch)
        for s in stores(conn, schema)
    ]
    return _chunks(heapq.merge(*logs, key=_when), batch)


def delivered(runs: Runs, store: str, position: int) -> None:
    """Note that the stream delivered ``position`` of ``store``'s log (a relay publishes a
    store's events in its log's order, so they come as runs)."""
    spans = runs.setdefault(store, [])
    if spans and spans[-1][1] + 1 == position:
        spans[-1][1] = position
    else:
        spans.append([position, position])


def gaps(spans: Sequence[list[int]], after: int) -> list[tuple[int, int]]:
    """The ``(after, up_to]`` ranges of a log past ``after`` that ``spans`` do not cover."""
    out, low = [], after
    for first, last in sorted(spans):
        if first > low + 1:
            out.append((low, first - 1))
        low = max(low, last)
    out.append((low, END))
    return out


def last_positions(chunk: Iterable[Entry]) -> dict[str, int]:
    """The highest position of each store among entries."""
    last: dict[str, int] = {}
    for _, store, position, _ in chunk:
        last[store] = max(last.get(store, 0), position)
    return last


def seen_in(batch: Sequence[Delivery]) -> dict[str, int]:
    """The highest store position among relayed messages of a batch, per store."""
    seen: dict[str, int] = {}
    for d in batch:
        source = source_of(d.msg) if d.msg is not None else None
        if source is not None:
            seen[source[0]] = max(seen.get(source[0], 0), source[1])
    return seen


def subject_matcher(root: str, patterns: Sequence[str]) -> Callable[[Event], bool]:
    """Whether an event's subject matches one of a consumer's filters (NATS wildcards)."""
    matches = subject_filter(root, patterns)
    return lambda event: matches(event.workspace_id, event.type)


def subject_filter(root: str, patterns: Sequence[str]) -> Callable[[str, str], bool]:
    """``subject_matcher`` asked by an event's workspace and type (what its JSON says, for a
    reader that does not make the typed event)."""
    full = [f"{root}.{p}" for p in patterns]
    known: dict[tuple[str, str], bool] = {}  # the answer per workspace and type, asked once

    def wanted(workspace: str, kind: str) -> bool:
        key = (workspace, kind)
        found = known.get(key)
        if found is None:
            if len(known) > 10_000:  # workspaces come and go: a bound on what is kept
                known.clear()
            subject = f"{root}.{workspace}.{kind}"  # as ``Event.subject`` makes it
            found = known[key] = any(subject_matches(p, subject) for p in full)
        return found

    return wanted


def _log(
    conn: psycopg.Connection[Any],
    schema: str,
    store: str,
    ranges: Sequence[tuple[int, int]],
    batch: int,
) -> Iterator[Entry]:
    """A store's events in the ``(after, up_to]`` ranges of its log, in order."""
    query = SQL(
        "SELECT notification_id, state FROM {}.{} WHERE notification_id > %s"
        " AND notification_id <= %s ORDER BY notification_id LIMIT %s"
    ).format(Identifier(schema), Identifier(f"{store}_events"))
    reg = registry()
    for after, up_to in ranges:
        while True:
            rows = conn.execute(query, (after, up_to, batch)).fetchall()
            for position, state in rows:
                try:
                    event = reg.decode(bytes(state))
                except EventDecodeError:
                    continue  # parked when it was live: no consumer ever had it
                yield event.occurred_at, store, int(position), event
            if len(rows) < batch:
                break
            after = int(rows[-1][0])


def _when(entry: Entry) -> datetime:
    return entry[0]


def _chunks(entries: Iterable[Entry], size: int) -> Iterator[list[Entry]]:
    chunk: list[Entry] = []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
