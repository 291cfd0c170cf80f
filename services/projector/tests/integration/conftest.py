"""What the projector's read-model tests share: a schema of their own on real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from baton_projector.projections import create_tables


@pytest.fixture
def views(database_url: str) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A connection and a fresh schema with the projector's tables in it, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(database_url, autocommit=True)
    try:
        create_tables(conn, schema)
        yield conn, schema
    finally:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()
