"""The SQLite store: WAL mode, one writer task that group-commits, a separate reader connection.

Writes are queued as small operations; the writer runs every queued operation in one transaction
(each inside its own SAVEPOINT, so one failing operation does not spoil the others) and commits
once. Callers get their result only after the commit, so an acknowledged write survives `kill -9`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

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
from .schema import MIGRATIONS

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[sqlite3.Connection], Any]

_MAX_BATCH = 512
_CHECKPOINT_EVERY = 0.5  # seconds
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


def _run_from_row(row: sqlite3.Row | tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        id=row[0],
        flow=row[1],
        status=row[2],
        idempotency_key=row[3],
        created_at=row[4],
        deadline=row[5],
        decided_at=row[6],
        doc=json.loads(row[7]),
        resume=json.loads(row[8]) if row[8] else None,
        decision=json.loads(row[9]) if row[9] else None,
        escalated_at=row[10],
    )


def _job_from_row(row: sqlite3.Row | tuple[Any, ...]) -> JobRecord:
    return JobRecord(
        id=row[0],
        kind=row[1],
        run_id=row[2],
        payload=json.loads(row[3]),
        body=row[4],
        status=row[5],
        attempts=row[6],
        next_at=row[7],
        created_at=row[8],
        last_status=row[9],
        last_error=row[10],
    )


def _insert_events(
    db: sqlite3.Connection, run_id: str, events: list[tuple[str, dict[str, Any]]], at: float
) -> None:
    if events:
        db.executemany(
            "INSERT INTO events (run_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            [(run_id, at, kind, _dumps(detail)) for kind, detail in events],
        )


def _insert_jobs(db: sqlite3.Connection, jobs: list[NewJob], now: float) -> None:
    # created_at starts a job's retry window, so a job scheduled for later (a reminder, an
    # escalation) gets its full window from when it is due, not from when it was queued.
    if jobs:
        db.executemany(
            "INSERT INTO jobs (id, run_id, kind, payload, body, status, next_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            [
                (
                    j.id,
                    j.run_id,
                    j.kind,
                    _dumps(j.payload),
                    j.body,
                    j.next_at or now,
                    max(now, j.next_at or now),
                )
                for j in jobs
            ],
        )


def _decide(
    db: sqlite3.Connection,
    run_id: str,
    status: str,
    decision: dict[str, Any],
    decided_at: float,
    jobs: list[NewJob],
    events: list[tuple[str, dict[str, Any]]],
) -> bool:
    # The conditional update is the whole "first decision wins" rule.
    cursor = db.execute(
        "UPDATE runs SET status = ?, decision = ?, decided_at = ?, decided_by = ?, edited = ?"
        " WHERE id = ? AND status = 'pending'",
        (
            status,
            _dumps(decision),
            decided_at,
            decision.get("decided_by"),
            int(bool(decision.get("edited"))),
            run_id,
        ),
    )
    if cursor.rowcount != 1:
        return False
    _insert_events(db, run_id, events, decided_at)
    _insert_jobs(db, jobs, decided_at)
    return True


class SQLiteStore:
    """The embedded store. Open it with `open_sqlite_store(path)`."""

    def __init__(self, path: str) -> None:
        self._path = path
        # Writes run on one dedicated thread with its own connection: a whole batch of queued
        # operations costs one hop between the event loop and the thread, not one per statement.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._writer: sqlite3.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[tuple[WriteOp, asyncio.Future[Any]]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None
        self._owner = secrets.token_hex(8)  # marks the leases this store takes
        # Checkpoints copy the WAL back into the database file. Left to SQLite they run inside
        # a commit and stall every queued write; here a separate thread runs them beside the
        # writer (a PASSIVE checkpoint never blocks it).
        self._checkpoint_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        self._writer = await loop.run_in_executor(self._thread, self._open_writer)
        self._reader = await aiosqlite.connect(self._path, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=10000")
        await self._reader.execute("PRAGMA query_only=ON")
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        self._checkpointer = await loop.run_in_executor(
            self._checkpoint_thread,
            lambda: sqlite3.connect(self._path, isolation_level=None, check_same_thread=False),
        )
        self._checkpoint_task = asyncio.create_task(self._checkpoint_loop(), name="checkpoint")

    async def _checkpoint_loop(self) -> None:
        loop = asyncio.get_running_loop()
        db = self._checkpointer
        assert db is not None
        while True:
            await asyncio.sleep(_CHECKPOINT_EVERY)
            try:
                await loop.run_in_executor(
                    self._checkpoint_thread, db.execute, "PRAGMA wal_checkpoint(PASSIVE)"
                )
            except sqlite3.Error:
                log.warning("WAL checkpoint failed; will try again", exc_info=True)

    def _open_writer(self) -> sqlite3.Connection:
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the caller hears about it, even across power loss.
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA wal_autocheckpoint=0")  # see _checkpoint_loop
        self.migrate_schema(db)
        # One process owns an SQLite file, so leases left by a killed predecessor are stale:
        # release them now instead of waiting for them to expire.
        db.execute(
            "UPDATE jobs SET next_at = MIN(next_at, ?), lease_until = 0"
            " WHERE status = 'pending' AND lease_until > 0",
            (time.time(),),
        )
        return db

    async def close(self) -> None:
        if self._writer_task is not None and not self._writer_task.done():
            await self._release_leases()
        for task in (self._checkpoint_task, self._writer_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._checkpointer is not None:
            checkpointer = self._checkpointer
            await asyncio.get_running_loop().run_in_executor(
                self._checkpoint_thread, checkpointer.close
            )
        self._checkpoint_thread.shutdown(wait=True)
        if self._reader is not None:
            await self._reader.close()
        if self._writer is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._writer.close)
        self._thread.shutdown(wait=True)

    async def _release_leases(self) -> None:
        """Hand back the jobs this store still holds (their work was interrupted by stopping)."""

        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET next_at = MIN(next_at, ?), lease_until = 0"
                " WHERE lease_owner = ? AND status = 'pending' AND lease_until > 0",
                (time.time(), self._owner),
            )

        try:
            async with asyncio.timeout(5):
                await self._write(op)
        except (TimeoutError, sqlite3.Error) as exc:
            log.warning("could not hand back leased jobs (%s); the next start does", exc)

    @staticmethod
    def migrate_schema(db: sqlite3.Connection) -> None:
        """Apply pending migrations on `db`, in one immediate (write-locked) transaction."""
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("PRAGMA user_version").fetchone()
            version = row[0] if row else 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
                log.info("applied migration %d", number)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- the group-committing writer -----------------------------------------------------------

    async def _write(self, op: WriteOp) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return await future

    def _run_batch(self, ops: list[WriteOp]) -> list[tuple[Any, BaseException | None]]:
        """On the writer thread: every op in one transaction, each in its own savepoint."""
        db = self._writer
        assert db is not None
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for op in ops:
                db.execute("SAVEPOINT op")
                try:
                    result = op(db)
                except Exception as exc:
                    db.execute("ROLLBACK TO op")
                    db.execute("RELEASE op")
                    outcomes.append((None, exc))
                else:
                    db.execute("RELEASE op")
                    outcomes.append((result, None))
            db.execute("COMMIT")
        except Exception as exc:
            log.exception("write batch failed")
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")
            return [(None, exc) for _ in ops]
        return outcomes

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < _MAX_BATCH:
                batch.append(self._queue.get_nowait())
            outcomes = await loop.run_in_executor(
                self._thread, self._run_batch, [op for op, _ in batch]
            )
            for (_, future), (result, error) in zip(batch, outcomes, strict=True):
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

    def _read(self) -> aiosqlite.Connection:
        assert self._reader is not None, "store is not open"
        return self._reader

    # -- runs -------------------------------------------------------------------------------

    async def ping(self) -> None:
        await self._read().execute_fetchall("SELECT 1")

    async def listen_decisions(self, callback: Callable[[str | None], None]) -> None:
        """Nothing to do: one process owns an SQLite file and sees its own decisions."""

    async def run_exclusive(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """One process owns an SQLite file, so it is always the only one running `body`."""
        await body()

    async def keep_secret(self, name: str, value: str) -> str:
        def op(db: sqlite3.Connection) -> str:
            db.execute(
                "INSERT OR IGNORE INTO secrets (name, value, created_at) VALUES (?, ?, ?)",
                (name, value, time.time()),
            )
            row = db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()
            return str(row[0])

        kept: str = await self._write(op)
        return kept

    async def create_run(
        self, run: RunRecord, jobs: list[NewJob], events: list[tuple[str, dict[str, Any]]]
    ) -> tuple[RunRecord, bool]:
        def op(db: sqlite3.Connection) -> tuple[RunRecord, bool]:
            verdict = run.doc.get("policy") or {}
            decision = run.decision or {}
            cursor = db.execute(
                f"INSERT OR IGNORE INTO runs ({_RUN_COLUMNS}, decided_by, edited, rule_mode,"
                " would_approve) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.id,
                    run.flow,
                    run.status,
                    run.idempotency_key,
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
                ),
            )
            if cursor.rowcount == 0:
                found = db.execute(
                    f"SELECT {_RUN_COLUMNS} FROM runs WHERE flow = ? AND idempotency_key = ?",
                    (run.flow, run.idempotency_key),
                )
                row = found.fetchone()
                if row is None:
                    raise RuntimeError(f"run {run.id} clashed with nothing")
                return _run_from_row(row), False
            _insert_events(db, run.id, events, run.created_at)
            _insert_jobs(db, jobs, run.created_at)
            return run, True

        result: tuple[RunRecord, bool] = await self._write(op)
        return result

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._read().execute_fetchall(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        )
        return _run_from_row(next(iter(rows))) if rows else None

    async def list_runs(
        self, *, status: str | None, flow: str | None, limit: int, before: str | None
    ) -> list[RunRecord]:
        clauses, params = [], []
        for column, value in (("status", status), ("flow", flow)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._read().execute_fetchall(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        )
        return [_run_from_row(r) for r in rows]

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
        def op(db: sqlite3.Connection) -> bool:
            return _decide(db, run_id, status, decision, decided_at, jobs, events)

        won: bool = await self._write(op)
        return won

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
        def op(db: sqlite3.Connection) -> ApprovalOutcome:
            cursor = db.execute("SELECT status FROM runs WHERE id = ?", (run_id,))
            row = cursor.fetchone()
            if row is None or row[0] != "pending":
                return ApprovalOutcome("not_pending", 0)
            added = db.execute(
                "INSERT OR IGNORE INTO votes (run_id, reviewer_id, at, channel) VALUES (?,?,?,?)",
                (run_id, reviewer_id, decided_at, channel),
            )
            cursor = db.execute("SELECT COUNT(*) FROM votes WHERE run_id = ?", (run_id,))
            count_row = cursor.fetchone()
            count = count_row[0] if count_row else 0
            if added.rowcount == 0:
                return ApprovalOutcome("duplicate", count)
            if count < required:
                detail = {
                    "reviewer": reviewer_id,
                    "channel": channel,
                    "approvals": count,
                    "required": required,
                }
                _insert_events(db, run_id, [("approval", detail)], decided_at)
                return ApprovalOutcome("counted", count)
            won = _decide(db, run_id, "approved", decision, decided_at, jobs, events)
            return ApprovalOutcome("decided" if won else "not_pending", count)

        outcome: ApprovalOutcome = await self._write(op)
        return outcome

    async def approvals(self, run_id: str) -> list[str]:
        rows = await self._read().execute_fetchall(
            "SELECT reviewer_id FROM votes WHERE run_id = ? ORDER BY at", (run_id,)
        )
        return [r[0] for r in rows]

    async def mark_escalated(
        self, run_id: str, at: float, jobs: list[NewJob], events: list[tuple[str, dict[str, Any]]]
    ) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE runs SET escalated_at = ? WHERE id = ? AND status = 'pending'"
                " AND escalated_at IS NULL",
                (at, run_id),
            )
            if cursor.rowcount != 1:
                return False
            _insert_events(db, run_id, events, at)
            _insert_jobs(db, jobs, at)
            return True

        done: bool = await self._write(op)
        return done

    async def flow_counts(self, flow: str, since: float) -> FlowCounts:
        db = self._read()
        counts = FlowCounts()
        human = "decided_by IN ('reviewer', 'api')"
        groups = await db.execute_fetchall(
            "SELECT status, decided_by, COUNT(*) FROM runs WHERE flow = ? AND created_at >= ?"
            " GROUP BY status, decided_by",
            (flow, since),
        )
        for status, decided_by, n in groups:
            counts.runs += n
            counts.by_status[status] = counts.by_status.get(status, 0) + n
            if decided_by:
                counts.by_decided_by[decided_by] = counts.by_decided_by.get(decided_by, 0) + n
        counts.pending = counts.by_status.get("pending", 0)
        totals = await db.execute_fetchall(
            f"SELECT COUNT(*),"
            f" SUM(status = 'approved' AND NOT edited), SUM(edited), SUM(status = 'rejected'),"
            f" SUM(rule_mode = 'shadow'),"
            f" SUM(rule_mode = 'shadow' AND would_approve),"
            f" SUM(rule_mode = 'shadow' AND would_approve AND status = 'approved' AND NOT edited)"
            f" FROM runs WHERE flow = ? AND created_at >= ? AND {human}",
            (flow, since),
        )
        for row in totals:
            (
                counts.human_decisions,
                counts.human_approved_unchanged,
                counts.human_edited,
                counts.human_rejected,
                counts.shadow_decided,
                counts.shadow_would_approve,
                counts.shadow_agreed,
            ) = (int(v or 0) for v in row)
        rows = await db.execute_fetchall(
            f"SELECT decided_at - created_at FROM runs WHERE flow = ? AND created_at >= ?"
            f" AND {human} ORDER BY 1",
            (flow, since),
        )
        counts.decision_seconds = [r[0] for r in rows]
        return counts

    async def add_event(self, run_id: str, kind: str, detail: dict[str, Any]) -> None:
        def op(db: sqlite3.Connection) -> None:
            _insert_events(db, run_id, [(kind, detail)], time.time())

        await self._write(op)

    async def events(self, run_id: str) -> list[Event]:
        rows = await self._read().execute_fetchall(
            "SELECT at, kind, detail FROM events WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [Event(at=r[0], kind=r[1], detail=json.loads(r[2])) for r in rows]

    async def due_runs(self, now: float, limit: int) -> list[RunRecord]:
        rows = await self._read().execute_fetchall(
            # INDEXED BY: left to itself the planner picks runs_status and walks every pending
            # run (a million of them at scale) instead of the partial deadline index.
            f"SELECT {_RUN_COLUMNS} FROM runs INDEXED BY runs_pending_deadline"
            f" WHERE status = 'pending' AND deadline <= ?"
            " ORDER BY deadline LIMIT ?",
            (now, limit),
        )
        return [_run_from_row(r) for r in rows]

    async def next_deadline(self) -> float | None:
        row = next(
            iter(
                await self._read().execute_fetchall(
                    "SELECT MIN(deadline) FROM runs INDEXED BY runs_pending_deadline"
                    " WHERE status = 'pending'"
                )
            ),
            None,
        )
        return row[0] if row else None

    # -- jobs -------------------------------------------------------------------------------

    async def claim_jobs(
        self, now: float, *, limit: int, lease: float, kinds: tuple[str, ...]
    ) -> list[JobRecord]:
        marks = ",".join("?" * len(kinds))

        def op(db: sqlite3.Connection) -> list[JobRecord]:
            rows = db.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE status = 'pending' AND next_at <= ?"
                f" AND kind IN ({marks}) ORDER BY next_at LIMIT ?",
                (now, *kinds, limit),
            ).fetchall()
            # A claimed job's next_at moves to its lease expiry: it is invisible to other claims
            # until then, and "the next due job" stays one index lookup (no scan over leases).
            db.executemany(
                "UPDATE jobs SET lease_until = ?, next_at = ?, lease_owner = ? WHERE id = ?",
                [(now + lease, now + lease, self._owner, row[0]) for row in rows],
            )
            return [_job_from_row(r) for r in rows]

        claimed: list[JobRecord] = await self._write(op)
        return claimed

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
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET status = ?, attempts = attempts + ?, next_at = ?,"
                " last_status = ?, last_error = ?, lease_until = 0 WHERE id = ?",
                (status, int(attempted), next_at, last_status, last_error, job.id),
            )
            if event is not None and job.run_id is not None:
                _insert_events(db, job.run_id, [event], time.time())

        await self._write(op)

    async def next_job_at(self, kinds: tuple[str, ...]) -> float | None:
        marks = ",".join("?" * len(kinds))
        row = next(
            iter(
                await self._read().execute_fetchall(
                    f"SELECT MIN(next_at) FROM jobs WHERE status = 'pending' AND kind IN ({marks})",
                    kinds,
                )
            ),
            None,
        )
        return row[0] if row else None

    async def jobs_for_run(self, run_id: str, kind: str) -> list[JobRecord]:
        rows = await self._read().execute_fetchall(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = ? AND kind = ? ORDER BY created_at",
            (run_id, kind),
        )
        return [_job_from_row(r) for r in rows]

    async def requeue_job(self, job_id: str, now: float) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET status = 'pending', next_at = ?, lease_until = 0,"
                " created_at = ? WHERE id = ?",
                (now, now, job_id),
            )

        await self._write(op)

    async def add_jobs(self, jobs: list[NewJob]) -> None:
        def op(db: sqlite3.Connection) -> None:
            now = time.time()
            db.executemany(
                "INSERT OR IGNORE INTO jobs"
                " (id, run_id, kind, payload, body, status, next_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
                [
                    (j.id, j.run_id, j.kind, _dumps(j.payload), j.body, j.next_at or now, now)
                    for j in jobs
                ],
            )

        if jobs:
            await self._write(op)

    # -- hook subscriptions -----------------------------------------------------------------

    async def recent_decisions(self, *, flow: str | None, limit: int) -> list[RunRecord]:
        where = "WHERE decided_at IS NOT NULL" + (" AND flow = ?" if flow is not None else "")
        params: tuple[Any, ...] = (flow, limit) if flow is not None else (limit,)
        rows = await self._read().execute_fetchall(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY decided_at DESC, id DESC LIMIT ?",
            params,
        )
        return [_run_from_row(r) for r in rows]

    async def add_subscription(self, subscription: SubscriptionRecord) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO hook_subscriptions (id, target_url, flow, created_at)"
                " VALUES (?, ?, ?, ?)",
                (
                    subscription.id,
                    subscription.target_url,
                    subscription.flow,
                    subscription.created_at,
                ),
            )

        await self._write(op)

    async def get_subscription(self, subscription_id: str) -> SubscriptionRecord | None:
        rows = list(
            await self._read().execute_fetchall(
                "SELECT id, target_url, flow, created_at FROM hook_subscriptions WHERE id = ?",
                (subscription_id,),
            )
        )
        return SubscriptionRecord(*rows[0]) if rows else None

    async def delete_subscription(self, subscription_id: str) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            cursor = db.execute("DELETE FROM hook_subscriptions WHERE id = ?", (subscription_id,))
            return cursor.rowcount == 1

        deleted: bool = await self._write(op)
        return deleted

    async def subscriptions_for(self, flow: str) -> list[SubscriptionRecord]:
        rows = await self._read().execute_fetchall(
            "SELECT id, target_url, flow, created_at FROM hook_subscriptions"
            " WHERE flow IS NULL OR flow = ? ORDER BY created_at, id",
            (flow,),
        )
        return [SubscriptionRecord(*r) for r in rows]

    # -- dev mailbox ------------------------------------------------------------------------

    async def add_mail(
        self, *, to: str, subject: str, text: str, html: str | None, headers: dict[str, str]
    ) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO dev_mail (at, recipient, subject, text, html, headers)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), to, subject, text, html, _dumps(headers)),
            )

        await self._write(op)

    async def backlog(self) -> tuple[int, dict[str, int], float | None]:
        db = self._read()
        # Both queries use the partial indexes on pending rows, so they stay cheap at scale.
        pending = await db.execute_fetchall("SELECT COUNT(*) FROM runs WHERE status = 'pending'")
        jobs = await db.execute_fetchall(
            "SELECT kind, COUNT(*), MIN(next_at) FROM jobs WHERE status = 'pending' GROUP BY kind"
        )
        by_kind = {kind: count for kind, count, _ in jobs}
        oldest = min((due for _, _, due in jobs), default=None)
        return next(iter(pending))[0], by_kind, oldest

    async def list_mail(self, limit: int) -> list[MailRecord]:
        rows = await self._read().execute_fetchall(
            "SELECT id, at, recipient, subject, text, html, headers FROM dev_mail"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [
            MailRecord(
                id=r[0],
                at=r[1],
                to=r[2],
                subject=r[3],
                text=r[4],
                html=r[5],
                headers=json.loads(r[6]),
            )
            for r in rows
        ]

    # -- Telegram ---------------------------------------------------------------------------

    async def record_telegram_update(
        self, bot_id: str, update_id: int, job: NewJob, *, keep_for: float
    ) -> bool:
        def op(db: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = db.execute(
                "INSERT OR IGNORE INTO telegram_updates (bot_id, update_id, received_at)"
                " VALUES (?, ?, ?)",
                (bot_id, update_id, now),
            )
            if cursor.rowcount != 1:
                return False
            _insert_jobs(db, [job], now)
            if update_id % 100 == 0:
                db.execute("DELETE FROM telegram_updates WHERE received_at < ?", (now - keep_for,))
            return True

        new: bool = await self._write(op)
        return new

    async def add_telegram_buttons(self, buttons: list[TelegramButton]) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO telegram_buttons (id, run_id, reviewer_id, chat_id, choice,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (b.id, b.run_id, b.reviewer_id, b.chat_id, b.choice, b.created_at)
                    for b in buttons
                ],
            )

        await self._write(op)

    async def telegram_button(self, button_id: str) -> TelegramButton | None:
        rows = await self._read().execute_fetchall(
            "SELECT id, run_id, reviewer_id, chat_id, choice, created_at FROM telegram_buttons"
            " WHERE id = ?",
            (button_id,),
        )
        return TelegramButton(*next(iter(rows))) if rows else None

    async def add_telegram_message(self, message: TelegramMessage) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO telegram_messages (chat_id, message_id, run_id,"
                " reviewer_id, text, sent_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    message.chat_id,
                    message.message_id,
                    message.run_id,
                    message.reviewer_id,
                    message.text,
                    message.sent_at,
                    message.closed_at,
                ),
            )

        await self._write(op)

    async def telegram_messages(self, run_id: str) -> list[TelegramMessage]:
        rows = await self._read().execute_fetchall(
            "SELECT chat_id, message_id, run_id, reviewer_id, text, sent_at, closed_at"
            " FROM telegram_messages WHERE run_id = ? ORDER BY sent_at",
            (run_id,),
        )
        return [TelegramMessage(*row) for row in rows]

    async def close_telegram_message(self, chat_id: int, message_id: int, at: float) -> None:
        def op(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE telegram_messages SET closed_at = ? WHERE chat_id = ? AND message_id = ?",
                (at, chat_id, message_id),
            )

        await self._write(op)


@contextlib.asynccontextmanager
async def open_sqlite_store(path: str) -> AsyncIterator[SQLiteStore]:
    """Open (creating and migrating if needed) the SQLite database at `path`."""
    store = SQLiteStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
