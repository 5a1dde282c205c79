"""The PostgreSQL store (asyncpg), for several connector instances sharing one database.

It keeps the SQLite store's semantics exactly; what differs is how several processes stay
correct together:
- the hot writes (pause, decide, escalate) are single statements whose data-modifying CTEs
  insert the run or decision together with its events and jobs, so each is atomic and one
  round trip;
- jobs are claimed with `FOR UPDATE SKIP LOCKED` plus an expiring lease, so any instance may run
  any job, one at a time, and a job leased by an instance that died is taken up once the lease
  expires. Leases are never released wholesale at start (other instances may be running); a
  store that closes hands back only the leases it took;
- a decision sends a NOTIFY in its own transaction, and `listen_decisions` hands those to the
  service, so a long poll on one instance ends when another instance records the decision;
- migrations and `run_exclusive` use advisory locks, keyed by the schema in use
  (pg_schema.py, pg_coordination.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from .base import (
    ApprovalOutcome,
    Event,
    FlowCounts,
    JobRecord,
    JobStatus,
    MailRecord,
    NewJob,
    RunRecord,
    SubscriptionRecord,
    TelegramButton,
    TelegramMessage,
)
from .pg_coordination import DB_ERRORS, listen, run_exclusive
from .pg_schema import lock_key, migrate_postgres

log = logging.getLogger(__name__)

_CLAIMED_COLUMNS = (
    "jobs.id, jobs.kind, jobs.run_id, jobs.payload, jobs.body, jobs.status, jobs.attempts,"
    " picked.next_at, jobs.created_at, jobs.last_status, jobs.last_error"
)
_RUN_COLUMNS = (
    "id, flow, status, idempotency_key, created_at, deadline, decided_at, doc, resume, decision,"
    " escalated_at"
)
_JOB_COLUMNS = (
    "id, kind, run_id, payload, body, status, attempts, next_at, created_at, last_status,"
    " last_error"
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _encode(text: str | None) -> bytes | None:
    """Outside text goes into bytea columns: PostgreSQL text refuses NUL, SQLite keeps it."""
    return None if text is None else text.encode("utf-8")


def _decode(data: bytes | None) -> str | None:
    return None if data is None else bytes(data).decode("utf-8")


def _run_from_row(row: asyncpg.Record) -> RunRecord:
    return RunRecord(
        id=row[0],
        flow=row[1],
        status=row[2],
        idempotency_key=_decode(row[3]),
        created_at=row[4],
        deadline=row[5],
        decided_at=row[6],
        doc=json.loads(row[7]),
        resume=json.loads(row[8]) if row[8] else None,
        decision=json.loads(row[9]) if row[9] else None,
        escalated_at=row[10],
    )


def _job_from_row(row: asyncpg.Record) -> JobRecord:
    return JobRecord(
        id=row[0],
        kind=row[1],
        run_id=row[2],
        payload=json.loads(row[3]),
        body=bytes(row[4]) if row[4] is not None else None,
        status=row[5],
        attempts=row[6],
        next_at=row[7],
        created_at=row[8],
        last_status=row[9],
        last_error=_decode(row[10]),
    )


def _subscription_from_row(row: asyncpg.Record) -> SubscriptionRecord:
    return SubscriptionRecord(
        id=row[0], target_url=_decode(row[1]) or "", flow=row[2], created_at=row[3]
    )


def _matchable(text: str) -> bool:
    """False for text with a NUL, which no stored text has: such a lookup finds nothing (in SQLite
    too), so it is answered without asking PostgreSQL, which refuses NUL in text parameters."""
    return "\x00" not in text


def _with_effects(target: str, at: str, first: int) -> str:
    """A statement prefix: `target` (a data-modifying statement RETURNING id) and, only for the
    row it touched, the events and jobs passed as arrays in parameters `first`…`first + 7`.

    A job's created_at starts its retry window, so a job scheduled for later (a reminder, an
    escalation) gets its full window from when it is due, as in the SQLite store."""
    e, j = f"${first}", first + 2
    return f"""
    WITH target AS ({target}),
    new_events AS (
        INSERT INTO events (run_id, at, kind, detail)
        SELECT target.id, {at}, e.kind, e.detail
        FROM target, unnest({e}::text[], ${first + 1}::text[]) WITH ORDINALITY AS e(kind, detail, n)
        ORDER BY e.n
    ),
    new_jobs AS (
        INSERT INTO jobs (id, run_id, kind, payload, body, status, next_at, created_at)
        SELECT j.id, j.run_id, j.kind, j.payload, j.body, 'pending', j.next_at,
               GREATEST({at}, j.next_at)
        FROM target, unnest(${j}::text[], ${j + 1}::text[], ${j + 2}::text[], ${j + 3}::text[],
                            ${j + 4}::bytea[], ${j + 5}::float8[])
             AS j(id, run_id, kind, payload, body, next_at)
    )
    """


def _effects(
    events: list[tuple[str, dict[str, Any]]], jobs: list[NewJob], now: float
) -> list[list[Any]]:
    """The eight array parameters `_with_effects` expects."""
    return [
        [kind for kind, _ in events],
        [_dumps(detail) for _, detail in events],
        [j.id for j in jobs],
        [j.run_id for j in jobs],
        [j.kind for j in jobs],
        [_dumps(j.payload) for j in jobs],
        [j.body for j in jobs],
        [j.next_at or now for j in jobs],
    ]


_CREATE_RUN = (
    _with_effects(
        f"INSERT INTO runs ({_RUN_COLUMNS}, decided_by, edited, rule_mode, would_approve)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        " ON CONFLICT DO NOTHING RETURNING id",
        "$5::float8",
        16,
    )
    + "SELECT id FROM target"
)

_DECIDE = (
    _with_effects(
        "UPDATE runs SET status = $2, decision = $3, decided_at = $4, decided_by = $5, edited = $6"
        " WHERE id = $1 AND status = 'pending' RETURNING id",
        "$4::float8",
        7,
    )
    # Sent at commit, so a listener never hears of a decision that is not there yet.
    + "SELECT pg_notify($15, target.id) FROM target"
)

_ESCALATE = (
    _with_effects(
        "UPDATE runs SET escalated_at = $2 WHERE id = $1 AND status = 'pending'"
        " AND escalated_at IS NULL RETURNING id",
        "$2::float8",
        3,
    )
    + "SELECT id FROM target"
)


class _PooledConnection(asyncpg.Connection):
    """A pool connection that skips the reset query on release: store operations never change
    session state (no SET, LISTEN or session locks — those use connections of their own), and
    the reset would cost a round trip and server work on every operation."""

    def get_reset_query(self) -> str:
        return ""


class PostgresStore:
    """The shared store. Open it with `open_postgres_store(url)`."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self._url = url
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._schema = ""
        self._channel = ""
        self._listener_task: asyncio.Task[None] | None = None
        self._owner = secrets.token_hex(8)  # marks the leases this store takes

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._url,
            min_size=1,
            max_size=self._pool_size,
            max_inactive_connection_lifetime=300,
            connection_class=_PooledConnection,
        )
        async with self._pool.acquire() as conn:
            await migrate_postgres(conn)
            self._schema = await conn.fetchval("SELECT current_schema()")
        # One channel per schema, so deployments sharing a database do not wake each other.
        self._channel = "hitl_decided_" + hashlib.sha256(self._schema.encode()).hexdigest()[:16]

    async def close(self) -> None:
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener_task
        if self._pool is not None:
            await self._release_leases()
            await self._pool.close()

    async def _release_leases(self) -> None:
        """Hand back the jobs this store still holds (their work was interrupted by stopping), so
        other instances take them up now rather than when the leases end."""
        try:
            async with asyncio.timeout(5):
                await self._db().execute(
                    "UPDATE jobs SET next_at = LEAST(next_at, $2), lease_until = 0"
                    " WHERE lease_owner = $1 AND status = 'pending' AND lease_until > 0",
                    self._owner,
                    time.time(),
                )
        except (TimeoutError, *DB_ERRORS) as exc:
            log.warning("could not hand back leased jobs (%s); they wait for their leases", exc)

    def _db(self) -> asyncpg.Pool:
        assert self._pool is not None, "store is not open"
        return self._pool

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._db().acquire() as conn, conn.transaction():
            yield conn

    async def _connect(self) -> asyncpg.Connection:
        """A connection of its own, outside the pool (for LISTEN and session locks)."""
        return await asyncpg.connect(self._url)

    # -- several instances --------------------------------------------------------------------

    async def listen_decisions(self, callback: Callable[[str | None], None]) -> None:
        """Call `callback(run_id)` for every decision recorded by any instance; `None` after a
        reconnect, when some may have been missed. Returns once listening."""
        self._listener_task = await listen(self._connect, self._channel, callback)

    async def run_exclusive(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Run `body` while holding the cluster-wide lock `name` (see pg_coordination)."""
        await run_exclusive(self._connect, lock_key(self._schema, name), name, body)

    async def keep_secret(self, name: str, value: str) -> str:
        """Keep `value` under `name` unless a value is kept already; return the kept one."""
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (name) DO NOTHING",
                name,
                value,
                time.time(),
            )
            kept: str = await conn.fetchval("SELECT value FROM secrets WHERE name = $1", name)
            return kept

    # -- runs -------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._db().fetchval("SELECT 1")

    async def create_run(
        self, run: RunRecord, jobs: list[NewJob], events: list[tuple[str, dict[str, Any]]]
    ) -> tuple[RunRecord, bool]:
        verdict = run.doc.get("policy") or {}
        decision = run.decision or {}
        async with self._db().acquire() as conn:
            inserted = await conn.fetchval(
                _CREATE_RUN,
                run.id,
                run.flow,
                run.status,
                _encode(run.idempotency_key),
                run.created_at,
                run.deadline,
                run.decided_at,
                _dumps(run.doc),
                _dumps(run.resume) if run.resume else None,
                _dumps(run.decision) if run.decision else None,
                run.escalated_at,
                decision.get("decided_by"),
                int(bool(decision.get("edited"))) if decision else None,
                verdict.get("mode"),
                int(verdict["would_approve"]) if "would_approve" in verdict else None,
                *_effects(events, jobs, run.created_at),
            )
            if inserted is not None:
                return run, True
            # The insert waited for any clashing transaction, so the clash is committed now.
            row = await conn.fetchrow(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE flow = $1 AND idempotency_key = $2",
                run.flow,
                _encode(run.idempotency_key),
            )
        if row is None:
            raise RuntimeError(f"run {run.id} clashed with nothing")
        return _run_from_row(row), False

    async def get_run(self, run_id: str) -> RunRecord | None:
        if not _matchable(run_id):
            return None
        row = await self._db().fetchrow(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = $1", run_id)
        return _run_from_row(row) if row is not None else None

    async def list_runs(
        self, *, status: str | None, flow: str | None, limit: int, before: str | None
    ) -> list[RunRecord]:
        if not _matchable((status or "") + (flow or "")):
            return []
        upto = "<"
        if before is not None and not _matchable(before):
            # No id holds a NUL, so "id < 'abc\0…'" (bytewise, as SQLite compares) is "id <= 'abc'".
            before, upto = before.split("\x00", 1)[0], "<="
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("status =", status), ("flow =", flow), (f"id {upto}", before)):
            if value is not None:
                params.append(value)
                clauses.append(f"{column} ${len(params)}")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._db().fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ${len(params) + 1}",
            *params,
            limit,
        )
        return [_run_from_row(r) for r in rows]

    def _decide_args(
        self,
        run_id: str,
        status: str,
        decision: dict[str, Any],
        decided_at: float,
        jobs: list[NewJob],
        events: list[tuple[str, dict[str, Any]]],
    ) -> list[Any]:
        return [
            run_id,
            status,
            _dumps(decision),
            decided_at,
            decision.get("decided_by"),
            int(bool(decision.get("edited"))),
            *_effects(events, jobs, decided_at),
            self._channel,
        ]

    async def decide(
        self,
        run_id: str,
        *,
        status: str,
        decision: dict[str, Any],
        decided_at: float,
        jobs: list[NewJob],
        events: list[tuple[str, dict[str, Any]]],
    ) -> bool:
        if not _matchable(run_id):
            return False
        # The conditional update is the whole "first decision wins" rule; a concurrent decision
        # on the same row waits for ours and then finds the run no longer pending.
        rows = await self._db().fetch(
            _DECIDE, *self._decide_args(run_id, status, decision, decided_at, jobs, events)
        )
        return len(rows) == 1

    async def record_approval(
        self,
        run_id: str,
        reviewer_id: str,
        channel: str,
        *,
        required: int,
        decision: dict[str, Any],
        decided_at: float,
        jobs: list[NewJob],
        events: list[tuple[str, dict[str, Any]]],
    ) -> ApprovalOutcome:
        if not _matchable(run_id):
            return ApprovalOutcome("not_pending", 0)
        async with self._transaction() as conn:
            # Locking the run serialises the votes on it, as SQLite's single writer does.
            status = await conn.fetchval("SELECT status FROM runs WHERE id = $1 FOR UPDATE", run_id)
            if status != "pending":
                return ApprovalOutcome("not_pending", 0)
            added = await conn.fetchval(
                "INSERT INTO votes (run_id, reviewer_id, at, channel) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                run_id,
                reviewer_id,
                decided_at,
                channel,
            )
            count = await conn.fetchval("SELECT COUNT(*) FROM votes WHERE run_id = $1", run_id)
            if added is None:
                return ApprovalOutcome("duplicate", count)
            if count < required:
                detail = {
                    "reviewer": reviewer_id,
                    "channel": channel,
                    "approvals": count,
                    "required": required,
                }
                await conn.execute(
                    "INSERT INTO events (run_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
                    run_id,
                    decided_at,
                    "approval",
                    _dumps(detail),
                )
                return ApprovalOutcome("counted", count)
            rows = await conn.fetch(
                _DECIDE,
                *self._decide_args(run_id, "approved", decision, decided_at, jobs, events),
            )
            return ApprovalOutcome("decided" if rows else "not_pending", count)

    async def approvals(self, run_id: str) -> list[str]:
        if not _matchable(run_id):
            return []
        rows = await self._db().fetch(
            "SELECT reviewer_id FROM votes WHERE run_id = $1 ORDER BY at, seq", run_id
        )
        return [r[0] for r in rows]

    async def mark_escalated(
        self, run_id: str, at: float, jobs: list[NewJob], events: list[tuple[str, dict[str, Any]]]
    ) -> bool:
        if not _matchable(run_id):
            return False
        done = await self._db().fetchval(_ESCALATE, run_id, at, *_effects(events, jobs, at))
        return done is not None

    async def flow_counts(self, flow: str, since: float) -> FlowCounts:
        if not _matchable(flow):
            return FlowCounts()
        counts = FlowCounts()
        human = "decided_by IN ('reviewer', 'api')"
        async with self._db().acquire() as conn:
            groups = await conn.fetch(
                "SELECT status, decided_by, COUNT(*) FROM runs WHERE flow = $1"
                " AND created_at >= $2 GROUP BY status, decided_by",
                flow,
                since,
            )
            totals = await conn.fetchrow(
                f"SELECT COUNT(*),"
                f" COUNT(*) FILTER (WHERE status = 'approved' AND edited = 0),"
                f" COALESCE(SUM(edited), 0),"
                f" COUNT(*) FILTER (WHERE status = 'rejected'),"
                f" COUNT(*) FILTER (WHERE rule_mode = 'shadow'),"
                f" COUNT(*) FILTER (WHERE rule_mode = 'shadow' AND would_approve <> 0),"
                f" COUNT(*) FILTER (WHERE rule_mode = 'shadow' AND would_approve <> 0"
                f"  AND status = 'approved' AND edited = 0)"
                f" FROM runs WHERE flow = $1 AND created_at >= $2 AND {human}",
                flow,
                since,
            )
            seconds = await conn.fetch(
                f"SELECT decided_at - created_at FROM runs WHERE flow = $1 AND created_at >= $2"
                f" AND {human} ORDER BY 1",
                flow,
                since,
            )
        for status, decided_by, n in groups:
            counts.runs += n
            counts.by_status[status] = counts.by_status.get(status, 0) + n
            if decided_by:
                counts.by_decided_by[decided_by] = counts.by_decided_by.get(decided_by, 0) + n
        counts.pending = counts.by_status.get("pending", 0)
        assert totals is not None
        (
            counts.human_decisions,
            counts.human_approved_unchanged,
            counts.human_edited,
            counts.human_rejected,
            counts.shadow_decided,
            counts.shadow_would_approve,
            counts.shadow_agreed,
        ) = (int(v or 0) for v in totals)
        counts.decision_seconds = [r[0] for r in seconds]
        return counts

    async def add_event(self, run_id: str, kind: str, detail: dict[str, Any]) -> None:
        await self._db().execute(
            "INSERT INTO events (run_id, at, kind, detail) VALUES ($1, $2, $3, $4)",
            run_id,
            time.time(),
            kind,
            _dumps(detail),
        )

    async def events(self, run_id: str) -> list[Event]:
        if not _matchable(run_id):
            return []
        rows = await self._db().fetch(
            "SELECT at, kind, detail FROM events WHERE run_id = $1 ORDER BY id", run_id
        )
        return [Event(at=r[0], kind=r[1], detail=json.loads(r[2])) for r in rows]

    async def due_runs(self, now: float, limit: int) -> list[RunRecord]:
        # Several instances may list the same due runs; the conditional decide lets exactly one
        # of them time each run out, and the others see "already decided" and move on.
        rows = await self._db().fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'pending' AND deadline <= $1"
            " ORDER BY deadline LIMIT $2",
            now,
            limit,
        )
        return [_run_from_row(r) for r in rows]

    async def next_deadline(self) -> float | None:
        value: float | None = await self._db().fetchval(
            "SELECT MIN(deadline) FROM runs WHERE status = 'pending'"
        )
        return value

    # -- jobs -------------------------------------------------------------------------------

    async def claim_jobs(
        self, now: float, *, limit: int, lease: float, kinds: tuple[str, ...]
    ) -> list[JobRecord]:
        # SKIP LOCKED: instances claiming at the same moment take different jobs instead of
        # queueing behind each other. As in SQLite, a claimed job's next_at moves to its lease
        # expiry, which hides it from other claims until then; the rows returned keep the due
        # time they had, so the runner starts them in queue order.
        rows = await self._db().fetch(
            f"WITH picked AS ("
            f" SELECT id, next_at FROM jobs WHERE status = 'pending' AND next_at <= $2"
            f" AND kind = ANY($3::text[]) ORDER BY next_at LIMIT $4 FOR UPDATE SKIP LOCKED)"
            f" UPDATE jobs SET lease_until = $1, next_at = $1, lease_owner = $5"
            f" FROM picked WHERE jobs.id = picked.id"
            f" RETURNING {_CLAIMED_COLUMNS}",
            now + lease,
            now,
            list(kinds),
            limit,
            self._owner,
        )
        return [_job_from_row(r) for r in rows]

    async def finish_job(
        self,
        job: JobRecord,
        *,
        status: JobStatus,
        next_at: float,
        last_status: int | None,
        last_error: str | None,
        event: tuple[str, dict[str, Any]] | None = None,
        attempted: bool = True,
    ) -> None:
        update = (
            "UPDATE jobs SET status = $1, attempts = attempts + $2, next_at = $3,"
            " last_status = $4, last_error = $5, lease_until = 0 WHERE id = $6"
        )
        args = [status, int(attempted), next_at, last_status, _encode(last_error), job.id]
        if event is None or job.run_id is None:
            await self._db().execute(update, *args)
            return
        # One statement, so one round trip and still atomic: the outcome and its audit line (a
        # data-modifying WITH always runs, whether or not the main statement reads it).
        await self._db().execute(
            f"WITH done AS ({update})"
            f" INSERT INTO events (run_id, at, kind, detail) VALUES ($7, $8, $9, $10)",
            *args,
            job.run_id,
            time.time(),
            event[0],
            _dumps(event[1]),
        )

    async def next_job_at(self, kinds: tuple[str, ...]) -> float | None:
        value: float | None = await self._db().fetchval(
            "SELECT MIN(next_at) FROM jobs WHERE status = 'pending' AND kind = ANY($1::text[])",
            list(kinds),
        )
        return value

    async def jobs_for_run(self, run_id: str, kind: str) -> list[JobRecord]:
        if not _matchable(run_id + kind):
            return []
        rows = await self._db().fetch(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = $1 AND kind = $2 ORDER BY created_at",
            run_id,
            kind,
        )
        return [_job_from_row(r) for r in rows]

    async def requeue_job(self, job_id: str, now: float) -> None:
        await self._db().execute(
            "UPDATE jobs SET status = 'pending', next_at = $1, lease_until = 0,"
            " created_at = $1 WHERE id = $2",
            now,
            job_id,
        )

    async def add_jobs(self, jobs: list[NewJob]) -> None:
        if not jobs:
            return
        now = time.time()
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT INTO jobs (id, run_id, kind, payload, body, status, next_at, created_at)"
                " VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) ON CONFLICT (id) DO NOTHING",
                [
                    (j.id, j.run_id, j.kind, _dumps(j.payload), j.body, j.next_at or now, now)
                    for j in jobs
                ],
            )

    # -- hook subscriptions -----------------------------------------------------------------

    async def recent_decisions(self, *, flow: str | None, limit: int) -> list[RunRecord]:
        if flow is not None and not _matchable(flow):
            return []
        where = "WHERE decided_at IS NOT NULL" + (" AND flow = $2" if flow is not None else "")
        rows = await self._db().fetch(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY decided_at DESC, id DESC LIMIT $1",
            limit,
            *([flow] if flow is not None else []),
        )
        return [_run_from_row(r) for r in rows]

    async def add_subscription(self, subscription: SubscriptionRecord) -> None:
        await self._db().execute(
            "INSERT INTO hook_subscriptions (id, target_url, flow, created_at)"
            " VALUES ($1, $2, $3, $4)",
            subscription.id,
            _encode(subscription.target_url),
            subscription.flow,
            subscription.created_at,
        )

    async def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        if not _matchable(subscription_id):
            return None
        row = await self._db().fetchrow(
            "SELECT id, target_url, flow, created_at FROM hook_subscriptions WHERE id = $1",
            subscription_id,
        )
        return _subscription_from_row(row) if row is not None else None

    async def delete_subscription(self, subscription_id: str) -> bool:
        if not _matchable(subscription_id):
            return False
        deleted = await self._db().fetchval(
            "DELETE FROM hook_subscriptions WHERE id = $1 RETURNING 1", subscription_id
        )
        return deleted is not None

    async def subscriptions_for(self, flow: str) -> list[SubscriptionRecord]:
        if not _matchable(flow):
            return []
        rows = await self._db().fetch(
            "SELECT id, target_url, flow, created_at FROM hook_subscriptions"
            " WHERE flow IS NULL OR flow = $1 ORDER BY created_at, id",
            flow,
        )
        return [_subscription_from_row(r) for r in rows]

    # -- dev mailbox ------------------------------------------------------------------------

    async def add_mail(
        self, *, to: str, subject: str, text: str, html: str | None, headers: dict[str, str]
    ) -> None:
        await self._db().execute(
            "INSERT INTO dev_mail (at, recipient, subject, text, html, headers)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            time.time(),
            _encode(to),
            _encode(subject),
            _encode(text),
            _encode(html),
            _dumps(headers),
        )

    async def backlog(self) -> tuple[int, dict[str, int], float | None]:
        async with self._db().acquire() as conn:
            pending = await conn.fetchval("SELECT COUNT(*) FROM runs WHERE status = 'pending'")
            jobs = await conn.fetch(
                "SELECT kind, COUNT(*), MIN(next_at) FROM jobs WHERE status = 'pending'"
                " GROUP BY kind"
            )
        by_kind = {kind: count for kind, count, _ in jobs}
        oldest = min((due for _, _, due in jobs), default=None)
        return pending, by_kind, oldest

    async def list_mail(self, limit: int) -> list[MailRecord]:
        rows = await self._db().fetch(
            "SELECT id, at, recipient, subject, text, html, headers FROM dev_mail"
            " ORDER BY id DESC LIMIT $1",
            limit,
        )
        return [
            MailRecord(
                id=r[0],
                at=r[1],
                to=_decode(r[2]) or "",
                subject=_decode(r[3]) or "",
                text=_decode(r[4]) or "",
                html=_decode(r[5]),
                headers=json.loads(r[6]),
            )
            for r in rows
        ]

    # -- Telegram ---------------------------------------------------------------------------

    async def record_telegram_update(
        self, bot_id: str, update_id: int, job: NewJob, *, keep_for: float
    ) -> bool:
        now = time.time()
        async with self._transaction() as conn:
            new = await conn.fetchval(
                "INSERT INTO telegram_updates (bot_id, update_id, received_at)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                bot_id,
                update_id,
                now,
            )
            if new is None:
                return False
            await conn.execute(
                "INSERT INTO jobs (id, run_id, kind, payload, body, status, next_at, created_at)"
                " VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)",
                job.id,
                job.run_id,
                job.kind,
                _dumps(job.payload),
                job.body,
                job.next_at or now,
                max(now, job.next_at or now),
            )
            if update_id % 100 == 0:
                await conn.execute(
                    "DELETE FROM telegram_updates WHERE received_at < $1", now - keep_for
                )
            return True

    async def add_telegram_buttons(self, buttons: list[TelegramButton]) -> None:
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT INTO telegram_buttons (id, run_id, reviewer_id, chat_id, choice,"
                " created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (b.id, b.run_id, b.reviewer_id, b.chat_id, b.choice, b.created_at)
                    for b in buttons
                ],
            )

    async def telegram_button(self, button_id: str) -> TelegramButton | None:
        if not _matchable(button_id):
            return None
        row = await self._db().fetchrow(
            "SELECT id, run_id, reviewer_id, chat_id, choice, created_at FROM telegram_buttons"
            " WHERE id = $1",
            button_id,
        )
        return TelegramButton(*row) if row is not None else None

    async def add_telegram_message(self, message: TelegramMessage) -> None:
        # INSERT OR REPLACE, as in SQLite: a message id seen again replaces the whole row.
        await self._db().execute(
            "INSERT INTO telegram_messages (chat_id, message_id, run_id, reviewer_id, text,"
            " sent_at, closed_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (chat_id, message_id) DO UPDATE SET run_id = EXCLUDED.run_id,"
            " reviewer_id = EXCLUDED.reviewer_id, text = EXCLUDED.text,"
            " sent_at = EXCLUDED.sent_at, closed_at = EXCLUDED.closed_at",
            message.chat_id,
            message.message_id,
            message.run_id,
            message.reviewer_id,
            _encode(message.text),
            message.sent_at,
            message.closed_at,
        )

    async def telegram_messages(self, run_id: str) -> list[TelegramMessage]:
        if not _matchable(run_id):
            return []
        rows = await self._db().fetch(
            "SELECT chat_id, message_id, run_id, reviewer_id, text, sent_at, closed_at"
            " FROM telegram_messages WHERE run_id = $1 ORDER BY sent_at",
            run_id,
        )
        return [
            TelegramMessage(r[0], r[1], r[2], r[3], _decode(r[4]) or "", r[5], r[6]) for r in rows
        ]

    async def close_telegram_message(self, chat_id: int, message_id: int, at: float) -> None:
        await self._db().execute(
            "UPDATE telegram_messages SET closed_at = $1 WHERE chat_id = $2 AND message_id = $3",
            at,
            chat_id,
            message_id,
        )


@contextlib.asynccontextmanager
async def open_postgres_store(url: str, *, pool_size: int = 10) -> AsyncIterator[PostgresStore]:
    """Connect to PostgreSQL at `url` and apply pending migrations (under a lock)."""
    store = PostgresStore(url, pool_size=pool_size)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
