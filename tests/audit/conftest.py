"""Audit stores for tests: SQLite in a temporary directory and PostgreSQL for real.

PostgreSQL runs on this machine's default port; the session makes its own role and database, and
each test its own schema. A missing PostgreSQL fails these tests: it is not a reason to skip.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _admin(*statements: str) -> None:
    conn = await asyncpg.connect(ADMIN_DSN)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A role and database of our own; yields a DSN without a schema."""
    name = "sgw_" + secrets.token_hex(4)
    asyncio.run(_admin(f"CREATE ROLE {name} LOGIN", f"CREATE DATABASE {name} OWNER {name}"))
    yield f"postgresql://{name}@127.0.0.1:5432/{name}"
    asyncio.run(
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()",
            f"DROP DATABASE IF EXISTS {name}",
            f"DROP ROLE IF EXISTS {name}",
        )
    )


async def _schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'audit.sqlite3'}"
    dsn: str = request.getfixturevalue("postgres")
    schema = "t_" + secrets.token_hex(4)
    asyncio.run(_schema(dsn, schema))
    return f"{dsn}?search_path={schema}"
