"""A private PostgreSQL schema per test, on the server at TEST_DATABASE_URL.

Each test gets a fresh schema (dropped afterwards) and a URL whose `search_path` selects it, so
tests never see each other's rows. When no server answers, tests that need one are skipped
with a reason that says so plainly.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager

import asyncpg
import pytest

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
_unavailable: list[str] = []  # the reason, once a connection attempt failed


async def _admin() -> asyncpg.Connection:
    if _unavailable:
        pytest.skip(_unavailable[0])
    try:
        return await asyncpg.connect(SERVER_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        _unavailable.append(
            f"NO POSTGRESQL SERVER at {SERVER_URL} ({type(exc).__name__}: {exc}) — the"
            " PostgreSQL half of this test did NOT run; start one (see .ci/run)"
        )
        pytest.skip(_unavailable[0])


def with_schema(url: str, schema: str) -> str:
    """`url` with its search_path set to `schema` (asyncpg passes it as a server setting)."""
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def _execute(sql: str) -> None:
    conn = await _admin()
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def pg_schema() -> AsyncIterator[str]:
    """Create an empty schema, yield a database URL that uses it, drop it afterwards."""
    schema = f"t_{secrets.token_hex(6)}"
    await _execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_schema(SERVER_URL, schema)
    finally:
        await _execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def pg_schema_sync() -> Iterator[str]:
    """`pg_schema` for synchronous fixtures (its own event loop, on a worker thread)."""
    schema = f"t_{secrets.token_hex(6)}"
    with ThreadPoolExecutor(1) as worker:
        worker.submit(asyncio.run, _execute(f"CREATE SCHEMA {schema}")).result()
        try:
            yield with_schema(SERVER_URL, schema)
        finally:
            worker.submit(asyncio.run, _execute(f"DROP SCHEMA {schema} CASCADE")).result()
