"""What several instances on one PostgreSQL use to coordinate, each on a connection of its own:
LISTEN for decisions recorded elsewhere, and session advisory locks for work that only one
instance may do at a time (Telegram polling)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger(__name__)

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
HEARTBEAT = 10.0  # seconds between checks that a listening or locking connection still answers

Connect = Callable[[], Awaitable[asyncpg.Connection]]


def _termination(conn: asyncpg.Connection) -> asyncio.Event:
    """An event set when the connection ends."""
    lost = asyncio.Event()
    conn.add_termination_listener(lambda _: lost.set())
    return lost


async def _until_lost(conn: asyncpg.Connection, lost: asyncio.Event) -> None:
    """Return when the connection ends or stops answering (checked every few seconds)."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HEARTBEAT):
                await lost.wait()
        if lost.is_set():
            return
        try:
            async with asyncio.timeout(HEARTBEAT):
                await conn.fetchval("SELECT 1")
        except (TimeoutError, *DB_ERRORS):
            return


async def _subscribe(
    connect: Connect, channel: str, callback: Callable[[str | None], None]
) -> tuple[asyncpg.Connection, asyncio.Event]:
    conn = await connect()
    lost = _termination(conn)

    def notified(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        callback(str(payload))

    await conn.add_listener(channel, notified)
    return conn, lost


async def listen(
    connect: Connect, channel: str, callback: Callable[[str | None], None]
) -> asyncio.Task[None]:
    """LISTEN on `channel` and call `callback(payload)` for each NOTIFY; returns once listening,
    with the task that keeps the subscription alive (cancel it to stop).

    A lost connection is re-established; since notifications sent meanwhile are gone, the
    callback then gets `None`, meaning "re-check everything you wait for".
    """
    conn, lost = await _subscribe(connect, channel, callback)

    async def keep(conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        try:
            while True:
                await _until_lost(conn, lost)
                log.warning("decision listener connection lost; reconnecting")
                conn.terminate()
                delay = 0.1
                while True:
                    try:
                        conn, lost = await _subscribe(connect, channel, callback)
                        break
                    except DB_ERRORS as exc:
                        log.warning("decision listener cannot reconnect (%s)", exc)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)
                callback(None)
        finally:
            conn.terminate()

    return asyncio.create_task(keep(conn, lost), name=f"listen-{channel}")


async def run_exclusive(
    connect: Connect, key: int, name: str, body: Callable[[], Awaitable[None]]
) -> None:
    """Run `body` while holding the advisory lock `key`, waiting for the lock first.

    The lock is a session lock on a connection of its own, so it ends with that connection:
    when this instance dies, another takes over. When the connection is lost, `body` is
    cancelled and the lock sought again, so two bodies overlap at most for one heartbeat.
    """
    delay = 0.5
    while True:
        conn: asyncpg.Connection | None = None
        try:
            conn = await connect()
            lost = _termination(conn)
            await conn.execute("SELECT pg_advisory_lock($1)", key)  # waits, no polling
            log.info("holding the %s lock", name)
            task: asyncio.Future[None] = asyncio.ensure_future(body())
            watch = asyncio.create_task(_until_lost(conn, lost))
            try:
                await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                watch.cancel()
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if not task.cancelled():
                task.result()  # body's own error
                return
            log.warning("lost the %s lock; stopping until it is held again", name)
        except DB_ERRORS as exc:
            log.warning("cannot hold the %s lock (%s); retrying in %.1fs", name, exc, delay)
        finally:
            if conn is not None:
                conn.terminate()  # ends the session, which releases the lock
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)
