"""Writing a batch's rows in one statement: every row in one JSON array parameter, made into
rows again on the server.

``executemany`` sends a statement per row (pipelined, but each row still costs its own bind and
result in Python and in PostgreSQL): a rebuild writes hundreds of thousands of rows, and the
profile put half its time there. Arrays per column (``unnest``) cost as much again in psycopg's
array encoding, written in Python. One JSON array of rows is one ``orjson`` encoding (the
installation's jsonb encoder, ``baton_common.store``: NUL as U+FFFD, as the text columns have it
too), read back by ``jsonb_array_elements`` and cast column by column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from uuid import UUID

import psycopg
from psycopg.sql import SQL, Composable, Composed
from psycopg.types.json import Jsonb


def rows_from(types: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[Composed, list[Any]]:
    """``(SELECT … FROM jsonb_array_elements(…)) AS r(c0, c1, …)`` over ``rows``, each column cast
    to its type in ``types`` (a ``jsonb`` column as it is: a JSON null stays ``null``), and its
    parameter. Values are what JSON carries, or datetimes and UUIDs (as ISO text)."""
    columns = SQL(", ").join(
        SQL("e->{}").format(i) if kind == "jsonb" else SQL("(e->>{})::{}").format(i, SQL(kind))
        for i, kind in enumerate(types)
    )
    names = SQL(", ").join(SQL(f"c{i}") for i in range(len(types)))
    source = SQL("(SELECT {} FROM jsonb_array_elements(%s::jsonb) e) AS r({})").format(
        columns, names
    )
    return source, [Jsonb(rows)]


def insert(
    conn: psycopg.Connection[Any],
    into: Composable,
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    tail: str = "",
) -> None:
    """``INSERT INTO <into> SELECT * FROM <rows> <tail>`` (``tail``: an ``ON CONFLICT`` clause)."""
    if not rows:
        return
    source, params = rows_from(types, rows)
    conn.execute(SQL("INSERT INTO {} SELECT * FROM {} {}").format(into, source, SQL(tail)), params)


def uuids(values: Iterable[UUID | str | None]) -> str:
    """A ``uuid[]`` parameter as its text (``%s::uuid[]``): psycopg encodes a list of UUIDs
    element by element in Python, and a rebuild asks thousands at a time."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def copy_text(value: str) -> str:
    """``value`` as a field of ``COPY … FROM STDIN``'s text format (a backslash, newline,
    carriage return or tab escaped)."""
    if "\\" in value or "\n" in value or "\r" in value or "\t" in value:
        return value.translate(_COPY_ESCAPES)
    return value
