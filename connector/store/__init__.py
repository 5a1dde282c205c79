"""Storage: the only package that contains SQL."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from .base import (
    ApprovalOutcome,
    Event,
    FlowCounts,
    JobRecord,
    MailRecord,
    NewJob,
    RunRecord,
    Store,
    SubscriptionRecord,
    TelegramButton,
    TelegramMessage,
)
from .pg_schema import PG_MIGRATIONS, migrate_postgres
from .postgres import PostgresStore, open_postgres_store
from .schema import MIGRATIONS
from .sqlite import SQLiteStore, open_sqlite_store

__all__ = [
    "ApprovalOutcome",
    "Event",
    "FlowCounts",
    "JobRecord",
    "MailRecord",
    "NewJob",
    "PostgresStore",
    "RunRecord",
    "SQLiteStore",
    "Store",
    "SubscriptionRecord",
    "TelegramButton",
    "TelegramMessage",
    "is_postgres",
    "migrate",
    "open_store",
]


def is_postgres(url: str) -> bool:
    """True when `url` names a PostgreSQL database."""
    return url.startswith(("postgresql://", "postgres://"))


@contextlib.asynccontextmanager
async def open_store(url: str, *, pool_size: int = 10) -> AsyncIterator[Store]:
    """Open (and migrate) the store `url` names: `postgresql://…` (or `postgres://…`) selects
    PostgreSQL, `sqlite:///path` the embedded SQLite store."""
    if is_postgres(url):
        async with open_postgres_store(url, pool_size=pool_size) as pg:
            yield pg
        return
    if not url.startswith("sqlite:///"):
        raise ValueError(f"unsupported database URL {url.split(':', 1)[0]!r}")
    async with open_sqlite_store(url.removeprefix("sqlite:///")) as lite:
        yield lite


async def migrate(url: str) -> tuple[list[int], int]:
    """Apply pending migrations without starting anything else: (versions applied, latest)."""
    if is_postgres(url):
        conn = await asyncpg.connect(url)
        try:
            applied = await migrate_postgres(conn)
        finally:
            await conn.close()
        return applied, len(PG_MIGRATIONS)
    path = url.removeprefix("sqlite:///")

    def run() -> list[int]:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            before = db.execute("PRAGMA user_version").fetchone()[0]
            # Only the schema: a running connector may own this file and its job leases.
            SQLiteStore.migrate_schema(db)
            after = db.execute("PRAGMA user_version").fetchone()[0]
        finally:
            db.close()
        return list(range(before + 1, after + 1))

    return await asyncio.to_thread(run), len(MIGRATIONS)
