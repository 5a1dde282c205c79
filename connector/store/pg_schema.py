"""Versioned PostgreSQL migrations, one entry per SQLite migration in schema.py (same numbers).

Each entry runs once, in order, inside the start-up transaction that holds the migration lock
(`migrate_postgres`).
Types mirror the SQLite schema: times are seconds since the epoch (double precision), JSON is
stored as text exactly as written, and the few columns that hold arbitrary outside text are
bytea (UTF-8), because PostgreSQL text cannot hold NUL characters and SQLite's can.
"""

from __future__ import annotations

import hashlib
import logging
import time

import asyncpg

log = logging.getLogger(__name__)

PG_MIGRATIONS: list[str] = [
    # 1: runs, their audit trail, durable jobs, and the dev mailbox
    """
    CREATE TABLE runs (
        id TEXT COLLATE "C" PRIMARY KEY,
        flow TEXT NOT NULL,
        status TEXT NOT NULL,
        idempotency_key BYTEA,
        created_at DOUBLE PRECISION NOT NULL,
        deadline DOUBLE PRECISION NOT NULL,
        decided_at DOUBLE PRECISION,
        doc TEXT NOT NULL,
        resume TEXT,
        decision TEXT
    );
    CREATE UNIQUE INDEX runs_idempotency ON runs (flow, idempotency_key)
        WHERE idempotency_key IS NOT NULL;
    CREATE INDEX runs_pending_deadline ON runs (deadline) WHERE status = 'pending';
    CREATE INDEX runs_flow ON runs (flow, id);
    CREATE INDEX runs_status ON runs (status, id);

    CREATE TABLE events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        run_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_run ON events (run_id, id);

    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        run_id TEXT,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        body BYTEA,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at DOUBLE PRECISION NOT NULL,
        lease_until DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        last_status INTEGER,
        last_error BYTEA
    );
    CREATE INDEX jobs_due ON jobs (next_at) WHERE status = 'pending';
    CREATE INDEX jobs_run ON jobs (run_id, kind);

    CREATE TABLE dev_mail (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        recipient BYTEA NOT NULL,
        subject BYTEA NOT NULL,
        text BYTEA NOT NULL,
        html BYTEA,
        headers TEXT NOT NULL
    );
    """,
    # 2: flow policies — N-of-M votes, escalation, and columns the flow statistics aggregate
    """
    ALTER TABLE runs ADD COLUMN decided_by TEXT;
    ALTER TABLE runs ADD COLUMN edited INTEGER;
    ALTER TABLE runs ADD COLUMN rule_mode TEXT;
    ALTER TABLE runs ADD COLUMN would_approve INTEGER;
    ALTER TABLE runs ADD COLUMN escalated_at DOUBLE PRECISION;
    CREATE INDEX runs_flow_created ON runs (flow, created_at);

    CREATE TABLE votes (
        run_id TEXT NOT NULL,
        reviewer_id TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        channel TEXT NOT NULL,
        seq BIGINT GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (run_id, reviewer_id)
    );
    """,
    # 3: Telegram: processed updates (de-duplication), button ids, and the messages sent per run
    """
    CREATE TABLE telegram_updates (
        bot_id TEXT NOT NULL,
        update_id BIGINT NOT NULL,
        received_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (bot_id, update_id)
    );
    CREATE INDEX telegram_updates_received ON telegram_updates (received_at);

    CREATE TABLE telegram_buttons (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        reviewer_id TEXT,
        chat_id BIGINT NOT NULL,
        choice TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );

    CREATE TABLE telegram_messages (
        chat_id BIGINT NOT NULL,
        message_id BIGINT NOT NULL,
        run_id TEXT NOT NULL,
        reviewer_id TEXT,
        text BYTEA NOT NULL,
        sent_at DOUBLE PRECISION NOT NULL,
        closed_at DOUBLE PRECISION,
        PRIMARY KEY (chat_id, message_id)
    );
    CREATE INDEX telegram_messages_run ON telegram_messages (run_id);
    """,
    # 4: Zapier REST hook subscriptions ("New Decision"), and recent decisions newest first
    """
    CREATE TABLE hook_subscriptions (
        id TEXT COLLATE "C" PRIMARY KEY,
        target_url BYTEA NOT NULL,
        flow TEXT,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX hook_subscriptions_flow ON hook_subscriptions (flow);
    CREATE INDEX runs_decided ON runs (decided_at) WHERE decided_at IS NOT NULL;
    """,
    # 5: secrets the connector generated itself and every instance must share; which open
    # store holds a job's lease, so a store that closes can hand its jobs back at once
    """
    CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL
    );
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    """,
]


def lock_key(namespace: str, name: str) -> int:
    """A stable signed 64-bit advisory lock key for `name` within `namespace` (the schema)."""
    digest = hashlib.sha256(f"hitl-connector:{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def migrate_postgres(conn: asyncpg.Connection) -> list[int]:
    """Apply pending migrations under a transaction-scoped advisory lock; the versions applied.

    Two instances starting together: the second waits for the lock, then finds nothing to do.
    """
    schema = await conn.fetchval("SELECT current_schema()")
    if schema is None:
        raise RuntimeError("the database's search_path names no existing schema")
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema, "migrate"))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        version = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        if version > len(PG_MIGRATIONS):
            log.warning(
                "database schema version %d is newer than this connector's %d",
                version,
                len(PG_MIGRATIONS),
            )
        for number, script in enumerate(PG_MIGRATIONS[version:], start=version + 1):
            await conn.execute(script)
            await conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                number,
                time.time(),
            )
            log.info("applied PostgreSQL migration %d", number)
            applied.append(number)
    return applied
