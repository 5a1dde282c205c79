"""Storage: the only package that contains SQL."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
from .sqlite import SQLiteStore, open_sqlite_store

__all__ = [
    "ApprovalOutcome",
    "Event",
    "FlowCounts",
    "JobRecord",
    "MailRecord",
    "NewJob",
    "RunRecord",
    "SQLiteStore",
    "Store",
    "SubscriptionRecord",
    "TelegramButton",
    "TelegramMessage",
    "open_store",
]


@contextlib.asynccontextmanager
async def open_store(database_path: str) -> AsyncIterator[Store]:
    """Open the store the settings name; SQLite is the embedded default."""
    async with open_sqlite_store(database_path) as store:
        yield store
