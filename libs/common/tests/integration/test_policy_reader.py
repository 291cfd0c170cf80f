"""A workspace's policy read from the read model: one kept connection, made again when it breaks."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from baton_common.readmodels import create_tables
from baton_common.settings import Settings
from baton_common.workspaces import PolicyReader
from psycopg.sql import SQL, Identifier
from psycopg.types.json import Jsonb

pytestmark = pytest.mark.integration


def test_reads_share_one_connection_and_a_broken_one_is_made_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Identifier(settings.db_schema)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        create_tables(conn, settings.db_schema)
        conn.execute(
            SQL(
                "INSERT INTO {s}.workspaces (id, name, created_at, policy) VALUES (%s, %s, now(), %s)"
                " ON CONFLICT (id) DO UPDATE SET policy = EXCLUDED.policy"
            ).format(s=s),
            ("team", "team", Jsonb({"tools_deny": ["code.run"]})),
        )
    made: list[Any] = []
    connect = psycopg.connect

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(connect(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(psycopg, "connect", counted)
    reader = PolicyReader(settings.database_url, settings.db_schema, ttl_s=0)  # every get reads
    for _ in range(5):
        assert reader.get("team").tools_deny == ["code.run"]
    assert len(made) == 1  # a new connection (TCP, scram-sha-256) per read was the old way

    pid = made[0].info.backend_pid
    with connect(settings.database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert reader.get("team").tools_deny == ["code.run"]  # its connection went: made again
    assert len(made) == 2
