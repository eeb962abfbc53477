"""What the reliability scenarios share: a PostgreSQL schema of their own per test (the shared
server is never stopped or reconfigured)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import asyncpg
import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_store() -> Iterator[str]:
    """An audit store URL in a fresh schema, dropped afterwards."""
    schema = "rel_" + secrets.token_hex(4)

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE SCHEMA {schema}"))
    yield f"{PG_ADMIN}?search_path={schema}"
    asyncio.run(admin(f"DROP SCHEMA {schema} CASCADE"))
