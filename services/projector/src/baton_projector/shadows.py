"""Where a parallel rebuild's workers write (``parallel``), and how it becomes the views.

Most tables' rows each belong to one execution, so the workers write them side by side into the
one shadow without meeting. Five tables gather rows of many executions: the metrics' sums, a
workspace key's row, the audit trail (read in its order across executions) and, written by the
same view, the workspaces and keys. Each worker writes those into a schema of its own
(``<schema>_rebuild<i>``), and ``merge`` adds them up afterwards (sums added, a key's newest version, the trail by time).
A floating-point total's last bits depend on the order of its additions (as the live
projector's batches already make them): the workers' partial sums may differ there alone.

Then, in one transaction, the real tables are swapped for the shadow's (``swap``: the old ones
set aside and dropped, the new ones moved in, their indexes built beforehand): readers and the
live projector go on with the old views until then, and wait only for the swap and for what
came meanwhile to be folded on top. A rebuild killed midway leaves the shadows behind and the
real tables as they were; the next rebuild drops them first (``drop_shadows``). Two rebuilds of
one schema take turns (``parallel.REBUILD_LOCK``).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.sql import SQL, Composed, Identifier

# Every table a rebuild empties and writes again, in the order it writes them; what ``merge``
# does with the rows of many workers that meet in one row (else they are each a worker's own).
TABLES = (
    "executions", "execution_events", "workspaces", "api_keys", "audit", "approvals",
    "plan_versions", "plan_runs", "step_logs", "business_metrics", "business_metric_events",
    "business_metric_plans", "business_metric_attempts", "tool_attempts", "workspace_context",
)  # fmt: skip
OWN = ("workspaces", "api_keys", "audit", "business_metrics", "workspace_context")
SUMMED = {"business_metrics": ("workspace_id, metric, subject, outcome", "count, total")}
NEWEST = {"workspace_context": ("workspace_id, key", "version")}
BY_TIME = {"audit": "occurred_at"}  # a trail read in its order across executions


def shadow(schema: str, i: int | None = None) -> str:
    """The shadow all workers write (``i`` None), or worker ``i``'s own."""
    return f"{schema}_rebuild" if i is None else f"{schema}_rebuild{i}"


def drop_shadows(conn: psycopg.Connection[Any], schema: str) -> None:
    """Every shadow a rebuild of ``schema`` left (one killed midway), whatever its size was."""
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s",
        (schema.replace("_", "\\_") + "\\_re%",),
    ).fetchall()
    for (name,) in rows:
        rest = str(name).removeprefix(f"{schema}_rebuild")
        if rest.isdigit() or not rest or name == replaced(schema):
            conn.execute(SQL("DROP SCHEMA {} CASCADE").format(Identifier(name)))


def replaced(schema: str) -> str:
    return f"{schema}_replaced"


def create_shadows(
    conn: psycopg.Connection[Any], schema: str, n: int, create_tables: Any, drop_indexes: Any
) -> None:
    """The empty shadow and each worker's own, without their secondary indexes."""
    for name in [shadow(schema), *(shadow(schema, i) for i in range(n))]:
        create_tables(conn, name)
        drop_indexes(conn, name)


def merge(conn: psycopg.Connection[Any], schema: str, n: int) -> None:
    """The tables the workers wrote each in their own schema (``OWN``) into the shadow. A
    serial column (``seq``) is numbered again: the audit trail's by time."""
    for table in OWN:
        columns, serial = _columns(conn, schema, table)
        names = SQL(", ").join(Identifier(col) for col in columns)
        every = SQL(" UNION ALL ").join(
            SQL("SELECT {names}, {w} AS w_, {q} AS q_ FROM {t}").format(
                names=names,
                w=i,
                q=Identifier(serial) if serial else SQL("0"),
                t=Identifier(shadow(schema, i), table),
            )
            for i in range(n)
        )
        conn.execute(_merge_sql(table, names, every, Identifier(shadow(schema), table)))


def close_history(conn: psycopg.Connection[Any], schema: str) -> None:
    """The shadow's history rows, numbered by the workers at their places in the stream,
    made what the one process's sequence would have numbered them: 1, 2, … with no gap (an
    event numbered that a worker did not write: one that no longer decodes, one seen twice;
    rare, so renumbered only then), and the sequence set after the last, where the live
    projector goes on."""
    table = Identifier(shadow(schema), "execution_events")
    row = conn.execute(SQL("SELECT count(*), coalesce(max(seq), 0) FROM {}").format(table))
    count, last = row.fetchone() or (0, 0)
    if count != last:  # through negative numbers: no two rows hold one number on the way
        conn.execute(
            SQL(
                "UPDATE {t} e SET seq = -r.n FROM (SELECT seq, row_number() OVER (ORDER BY seq)"
                " AS n FROM {t}) r WHERE e.seq = r.seq"
            ).format(t=table)
        )
        conn.execute(SQL("UPDATE {} SET seq = -seq").format(table))
    conn.execute(
        "SELECT setval(pg_get_serial_sequence(%s, 'seq'), %s, %s)",
        (table.as_string(conn), max(count, 1), count > 0),
    )


def swap(conn: psycopg.Connection[Any], schema: str) -> None:
    """In the caller's transaction: the real tables set aside (dropped with ``drop_shadows``)
    and the shadow's moved in their place, indexes, constraints and sequences with them. The
    locks are taken first, all at once, the executions' tables first (as the live projector
    takes them, and a rebuild always has): the live projector and readers wait from here."""
    real = SQL(", ").join(Identifier(schema, t) for t in TABLES)
    conn.execute(SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(real))
    conn.execute(  # tells the live projector its remembered views are from before
        SQL(
            "UPDATE {}.projection_state SET generation = generation + 1 WHERE name = 'executions'"
        ).format(Identifier(schema))
    )
    conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(replaced(schema))))
    for table in TABLES:
        conn.execute(
            SQL("ALTER TABLE {} SET SCHEMA {}").format(
                Identifier(schema, table), Identifier(replaced(schema))
            )
        )
        conn.execute(
            SQL("ALTER TABLE {} SET SCHEMA {}").format(
                Identifier(shadow(schema), table), Identifier(schema)
            )
        )


def _merge_sql(table: str, names: Composed, every: Composed, target: Identifier) -> Composed:
    if table in SUMMED:
        keys, added = SUMMED[table]
        sums = SQL(", ").join(SQL("sum({c})").format(c=Identifier(a)) for a in added.split(", "))
        return SQL(
            "INSERT INTO {t} ({k}, {a}) SELECT {k}, {sums} FROM ({every}) u GROUP BY {k}"
        ).format(t=target, k=SQL(keys), a=SQL(added), sums=sums, every=every)
    if table in NEWEST:
        keys, version = NEWEST[table]
        return SQL(
            "INSERT INTO {t} ({names}) SELECT DISTINCT ON ({k}) {names} FROM ({every}) u"
            " ORDER BY {k}, {v} DESC"
        ).format(t=target, names=names, k=SQL(keys), v=Identifier(version), every=every)
    order = (
        SQL("{}, w_, q_").format(Identifier(BY_TIME[table])) if table in BY_TIME else SQL("w_, q_")
    )
    return SQL("INSERT INTO {t} ({names}) SELECT {names} FROM ({every}) u ORDER BY {o}").format(
        t=target, names=names, every=every, o=order
    )


def _columns(
    conn: psycopg.Connection[Any], schema: str, table: str
) -> tuple[list[str], str | None]:
    """A table's columns in order, less a serial one (numbered by the table), and that one."""
    rows = conn.execute(
        "SELECT column_name, column_default FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()
    serial = [str(r[0]) for r in rows if str(r[1] or "").startswith("nextval(")]
    return [str(r[0]) for r in rows if str(r[0]) not in serial], (serial[0] if serial else None)
