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
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .base import (
    Event,
    JobRecord,
    JobStatus,
    MailRecord,
    NewJob,
    RunRecord,
    TelegramButton,
    TelegramMessage,
)
from .schema import MIGRATIONS

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[aiosqlite.Connection], Awaitable[Any]]

_MAX_BATCH = 512
_RUN_COLUMNS = (
    "id, flow, status, idempotency_key, created_at, deadline, decided_at, doc, resume, decision"
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


async def _insert_events(
    db: aiosqlite.Connection, run_id: str, events: list[tuple[str, dict[str, Any]]], at: float
) -> None:
    if events:
        await db.executemany(
            "INSERT INTO events (run_id, at, kind, detail) VALUES (?, ?, ?, ?)",
            [(run_id, at, kind, _dumps(detail)) for kind, detail in events],
        )


async def _insert_jobs(db: aiosqlite.Connection, jobs: list[NewJob], now: float) -> None:
    if jobs:
        await db.executemany(
            "INSERT INTO jobs (id, run_id, kind, payload, body, status, next_at, created_at)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            [
                (j.id, j.run_id, j.kind, _dumps(j.payload), j.body, j.next_at or now, now)
                for j in jobs
            ],
        )


class SQLiteStore:
    """The embedded store. Open it with `open_sqlite_store(path)`."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[tuple[WriteOp, asyncio.Future[Any]]] = asyncio.Queue()
        self._writer_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self._path, isolation_level=None)
        await self._writer.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the caller hears about it, even across power loss.
        await self._writer.execute("PRAGMA synchronous=FULL")
        await self._writer.execute("PRAGMA busy_timeout=10000")
        await self._migrate(self._writer)
        self._reader = await aiosqlite.connect(self._path, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=10000")
        await self._reader.execute("PRAGMA query_only=ON")
        self._writer_task = asyncio.create_task(self._write_loop(), name="sqlite-writer")

    async def close(self) -> None:
        if self._writer_task is not None:
            self._writer_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer_task
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
            version = row[0] if row else 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in filter(str.strip, script.split(";")):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version = {number}")
                log.info("applied migration %d", number)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise

    # -- the group-committing writer -----------------------------------------------------------

    async def _write(self, op: WriteOp) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((op, future))
        return await future

    async def _write_loop(self) -> None:
        db = self._writer
        assert db is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < _MAX_BATCH:
                batch.append(self._queue.get_nowait())
            outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            try:
                await db.execute("BEGIN IMMEDIATE")
                for op, future in batch:
                    await db.execute("SAVEPOINT op")
                    try:
                        result = await op(db)
                    except Exception as exc:
                        await db.execute("ROLLBACK TO op")
                        await db.execute("RELEASE op")
                        outcomes.append((future, None, exc))
                    else:
                        await db.execute("RELEASE op")
                        outcomes.append((future, result, None))
                await db.execute("COMMIT")
            except Exception as exc:
                log.exception("write batch failed")
                with contextlib.suppress(Exception):
                    await db.execute("ROLLBACK")
                outcomes = [(future, None, exc) for _, future in batch]
            for future, result, error in outcomes:
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
        async with self._read().execute("SELECT 1") as cursor:
            await cursor.fetchone()

    async def create_run(
        self, run: RunRecord, jobs: list[NewJob], events: list[tuple[str, dict[str, Any]]]
    ) -> tuple[RunRecord, bool]:
        async def op(db: aiosqlite.Connection) -> tuple[RunRecord, bool]:
            cursor = await db.execute(
                f"INSERT OR IGNORE INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                ),
            )
            if cursor.rowcount == 0:
                async with db.execute(
                    f"SELECT {_RUN_COLUMNS} FROM runs WHERE flow = ? AND idempotency_key = ?",
                    (run.flow, run.idempotency_key),
                ) as found:
                    row = await found.fetchone()
                if row is None:
                    raise RuntimeError(f"run {run.id} clashed with nothing")
                return _run_from_row(row), False
            await _insert_events(db, run.id, events, run.created_at)
            await _insert_jobs(db, jobs, run.created_at)
            return run, True

        result: tuple[RunRecord, bool] = await self._write(op)
        return result

    async def get_run(self, run_id: str) -> RunRecord | None:
        async with self._read().execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _run_from_row(row) if row else None

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
        async with self._read().execute(
            f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        ) as cursor:
            rows = await cursor.fetchall()
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
        async def op(db: aiosqlite.Connection) -> bool:
            # The conditional update is the whole "first decision wins" rule.
            cursor = await db.execute(
                "UPDATE runs SET status = ?, decision = ?, decided_at = ?"
                " WHERE id = ? AND status = 'pending'",
                (status, _dumps(decision), decided_at, run_id),
            )
            if cursor.rowcount != 1:
                return False
            await _insert_events(db, run_id, events, decided_at)
            await _insert_jobs(db, jobs, decided_at)
            return True

        won: bool = await self._write(op)
        return won

    async def add_event(self, run_id: str, kind: str, detail: dict[str, Any]) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await _insert_events(db, run_id, [(kind, detail)], time.time())

        await self._write(op)

    async def events(self, run_id: str) -> list[Event]:
        async with self._read().execute(
            "SELECT at, kind, detail FROM events WHERE run_id = ? ORDER BY id", (run_id,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [Event(at=r[0], kind=r[1], detail=json.loads(r[2])) for r in rows]

    async def due_runs(self, now: float, limit: int) -> list[RunRecord]:
        async with self._read().execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'pending' AND deadline <= ?"
            " ORDER BY deadline LIMIT ?",
            (now, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_run_from_row(r) for r in rows]

    async def next_deadline(self) -> float | None:
        async with self._read().execute(
            "SELECT MIN(deadline) FROM runs WHERE status = 'pending'"
        ) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    # -- jobs -------------------------------------------------------------------------------

    async def claim_jobs(
        self, now: float, *, limit: int, lease: float, kinds: tuple[str, ...]
    ) -> list[JobRecord]:
        marks = ",".join("?" * len(kinds))

        async def op(db: aiosqlite.Connection) -> list[JobRecord]:
            async with db.execute(
                f"UPDATE jobs SET lease_until = ? WHERE id IN ("
                f" SELECT id FROM jobs WHERE status = 'pending' AND next_at <= ?"
                f" AND lease_until <= ? AND kind IN ({marks}) ORDER BY next_at LIMIT ?)"
                f" RETURNING {_JOB_COLUMNS}",
                (now + lease, now, now, *kinds, limit),
            ) as cursor:
                rows = await cursor.fetchall()
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
        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "UPDATE jobs SET status = ?, attempts = attempts + ?, next_at = ?,"
                " last_status = ?, last_error = ?, lease_until = 0 WHERE id = ?",
                (status, int(attempted), next_at, last_status, last_error, job.id),
            )
            if event is not None and job.run_id is not None:
                await _insert_events(db, job.run_id, [event], time.time())

        await self._write(op)

    async def next_job_at(self, kinds: tuple[str, ...]) -> float | None:
        marks = ",".join("?" * len(kinds))
        async with self._read().execute(
            f"SELECT MIN(MAX(next_at, lease_until)) FROM jobs"
            f" WHERE status = 'pending' AND kind IN ({marks})",
            kinds,
        ) as cursor:
            row = await cursor.fetchone()
        return row[0] if row else None

    async def jobs_for_run(self, run_id: str, kind: str) -> list[JobRecord]:
        async with self._read().execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE run_id = ? AND kind = ? ORDER BY created_at",
            (run_id, kind),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_job_from_row(r) for r in rows]

    async def requeue_job(self, job_id: str, now: float) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "UPDATE jobs SET status = 'pending', next_at = ?, lease_until = 0,"
                " created_at = ? WHERE id = ?",
                (now, now, job_id),
            )

        await self._write(op)

    # -- dev mailbox ------------------------------------------------------------------------

    async def add_mail(
        self, *, to: str, subject: str, text: str, html: str | None, headers: dict[str, str]
    ) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT INTO dev_mail (at, recipient, subject, text, html, headers)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), to, subject, text, html, _dumps(headers)),
            )

        await self._write(op)

    async def list_mail(self, limit: int) -> list[MailRecord]:
        async with self._read().execute(
            "SELECT id, at, recipient, subject, text, html, headers FROM dev_mail"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ) as cursor:
            rows = await cursor.fetchall()
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
        async def op(db: aiosqlite.Connection) -> bool:
            now = time.time()
            cursor = await db.execute(
                "INSERT OR IGNORE INTO telegram_updates (bot_id, update_id, received_at)"
                " VALUES (?, ?, ?)",
                (bot_id, update_id, now),
            )
            if cursor.rowcount != 1:
                return False
            await _insert_jobs(db, [job], now)
            if update_id % 100 == 0:
                await db.execute(
                    "DELETE FROM telegram_updates WHERE received_at < ?", (now - keep_for,)
                )
            return True

        new: bool = await self._write(op)
        return new

    async def add_telegram_buttons(self, buttons: list[TelegramButton]) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "INSERT INTO telegram_buttons (id, run_id, reviewer_id, chat_id, choice,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (b.id, b.run_id, b.reviewer_id, b.chat_id, b.choice, b.created_at)
                    for b in buttons
                ],
            )

        await self._write(op)

    async def telegram_button(self, button_id: str) -> TelegramButton | None:
        async with self._read().execute(
            "SELECT id, run_id, reviewer_id, chat_id, choice, created_at FROM telegram_buttons"
            " WHERE id = ?",
            (button_id,),
        ) as cursor:
            row = await cursor.fetchone()
        return TelegramButton(*row) if row else None

    async def add_telegram_message(self, message: TelegramMessage) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
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
        async with self._read().execute(
            "SELECT chat_id, message_id, run_id, reviewer_id, text, sent_at, closed_at"
            " FROM telegram_messages WHERE run_id = ? ORDER BY sent_at",
            (run_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [TelegramMessage(*row) for row in rows]

    async def close_telegram_message(self, chat_id: int, message_id: int, at: float) -> None:
        async def op(db: aiosqlite.Connection) -> None:
            await db.execute(
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
