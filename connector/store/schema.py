"""Versioned SQLite migrations; each entry runs once, in order, inside a transaction."""

MIGRATIONS: list[str] = [
    # 1: runs, their audit trail, durable jobs, and the dev mailbox
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        flow TEXT NOT NULL,
        status TEXT NOT NULL,
        idempotency_key TEXT,
        created_at REAL NOT NULL,
        deadline REAL NOT NULL,
        decided_at REAL,
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
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX events_run ON events (run_id, id);

    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        run_id TEXT,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        body BLOB,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        lease_until REAL NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        last_status INTEGER,
        last_error TEXT
    );
    CREATE INDEX jobs_due ON jobs (next_at) WHERE status = 'pending';
    CREATE INDEX jobs_run ON jobs (run_id, kind);

    CREATE TABLE dev_mail (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        recipient TEXT NOT NULL,
        subject TEXT NOT NULL,
        text TEXT NOT NULL,
        html TEXT,
        headers TEXT NOT NULL
    );
    """,
    # 2: flow policies — N-of-M votes, escalation, and columns the flow statistics aggregate
    """
    ALTER TABLE runs ADD COLUMN decided_by TEXT;
    ALTER TABLE runs ADD COLUMN edited INTEGER;
    ALTER TABLE runs ADD COLUMN rule_mode TEXT;
    ALTER TABLE runs ADD COLUMN would_approve INTEGER;
    ALTER TABLE runs ADD COLUMN escalated_at REAL;
    CREATE INDEX runs_flow_created ON runs (flow, created_at);

    CREATE TABLE votes (
        run_id TEXT NOT NULL,
        reviewer_id TEXT NOT NULL,
        at REAL NOT NULL,
        channel TEXT NOT NULL,
        PRIMARY KEY (run_id, reviewer_id)
    );
    """,
    # 3: Telegram: processed updates (de-duplication), button ids, and the messages sent per run
    """
    CREATE TABLE telegram_updates (
        bot_id TEXT NOT NULL,
        update_id INTEGER NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (bot_id, update_id)
    );
    CREATE INDEX telegram_updates_received ON telegram_updates (received_at);

    CREATE TABLE telegram_buttons (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        reviewer_id TEXT,
        chat_id INTEGER NOT NULL,
        choice TEXT NOT NULL,
        created_at REAL NOT NULL
    );

    CREATE TABLE telegram_messages (
        chat_id INTEGER NOT NULL,
        message_id INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        reviewer_id TEXT,
        text TEXT NOT NULL,
        sent_at REAL NOT NULL,
        closed_at REAL,
        PRIMARY KEY (chat_id, message_id)
    );
    CREATE INDEX telegram_messages_run ON telegram_messages (run_id);
    """,
    # 4: Zapier REST hook subscriptions ("New Decision"), and recent decisions newest first
    """
    CREATE TABLE hook_subscriptions (
        id TEXT PRIMARY KEY,
        target_url TEXT NOT NULL,
        flow TEXT,
        created_at REAL NOT NULL
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
        created_at REAL NOT NULL
    );
    ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
    """,
]
