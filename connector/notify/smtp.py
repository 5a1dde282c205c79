"""Sending mail over SMTP through a small pool of reused connections.

Many runs can be paused at once; opening one connection per message would look like abuse to
most mail servers and is slow. The pool keeps at most `max_connections` connections, each used
by one message at a time, reused while it stays healthy, recycled after a number of messages and
closed after a while without use. Every attempt is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from email.message import Message

import aiosmtplib

from ..config import SmtpSettings
from .email_render import Draft

log = logging.getLogger(__name__)

_IDLE_TIMEOUT = 30.0  # below the usual server idle limits (60 to 300 s)
_MAX_MESSAGES = 100  # several providers cap messages per connection around 100


class SendError(Exception):
    """A message did not go out. `permanent` when the server refused this message for good."""

    def __init__(self, message: str, *, permanent: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


@dataclass
class _Connection:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    idle_since: float = 0.0


def classify(exc: Exception) -> SendError:
    """Turn an aiosmtplib failure into a SendError: 5xx for the recipient or data is permanent.

    Failures of the connection itself (refused, TLS, login, sender) are about the operator's
    setup or an outage, not this message; they are retried so that fixing the setup lets the
    queued mail go out.
    """
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        text = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        permanent = bool(codes) and all(code >= 500 for code in codes)
        return SendError(
            f"recipient refused: {text}", permanent=permanent, code=codes[0] if codes else None
        )
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return SendError(
            f"message refused: {exc.code} {exc.message}", permanent=exc.code >= 500, code=exc.code
        )
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return SendError(f"not supported by the server: {exc.message}", permanent=True)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return SendError(f"SMTP server answered {exc.code} {exc.message}", code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPException):
        return SendError(exc.message)
    return SendError(f"{type(exc).__name__}: {exc}")


def _reusable(exc: Exception) -> bool:
    # After a refused recipient or message aiosmtplib resets the envelope; the session is fine.
    return isinstance(exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPDataError)


class SmtpPool:
    """Delivers messages through a bounded pool of SMTP connections."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        idle_timeout: float = _IDLE_TIMEOUT,
        max_messages: int = _MAX_MESSAGES,
    ) -> None:
        self._settings = settings
        self._timeout = settings.timeout.total_seconds()
        self._idle_timeout = idle_timeout
        self._max_messages = max_messages
        self._slots = asyncio.Semaphore(settings.max_connections)
        self._idle: list[_Connection] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.TimerHandle | None = None
        self.opened = 0

    async def deliver(self, message: Draft, *, sender: str, recipient: str) -> None:
        """Send one message; raise SendError when it did not go out."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise SendError(f"every SMTP connection stayed busy for {self._timeout:g}s") from exc
        try:
            await self._deliver(message.mime(), sender, recipient)
        finally:
            self._slots.release()

    async def _deliver(self, message: Message, sender: str, recipient: str) -> None:
        conn = self._take_idle()
        try:
            async with asyncio.timeout(self._timeout):
                if conn is not None:
                    try:
                        await conn.smtp.send_message(message, sender=sender, recipients=[recipient])
                    except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                        # The server closed the idle connection; try once on a fresh one.
                        self._discard(conn)
                        conn = None
                if conn is None:
                    conn = await self._connect()
                    await conn.smtp.send_message(message, sender=sender, recipients=[recipient])
        except TimeoutError as exc:
            if conn is not None:
                self._discard(conn)
            raise SendError(f"SMTP server did not finish within {self._timeout:g}s") from exc
        except Exception as exc:
            if conn is not None:
                if _reusable(exc) and conn.smtp.is_connected:
                    self._put_idle(conn)
                else:
                    self._discard(conn)
            raise classify(exc) from exc
        except BaseException:
            if conn is not None:
                self._discard(conn)
            raise
        conn.sent += 1
        self._put_idle(conn)

    async def _connect(self) -> _Connection:
        s = self._settings
        smtp = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.effective_port,
            use_tls=s.tls,
            # Forced when asked for, never opportunistic: a server that does not offer STARTTLS
            # fails the send instead of silently receiving the message in clear text.
            start_tls=s.starttls,
            validate_certs=s.verify,
            timeout=self._timeout,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
        )
        await smtp.connect()
        self.opened += 1
        log.debug("opened SMTP connection %d to %s:%d", self.opened, s.host, s.effective_port)
        return _Connection(smtp)

    # -- the idle list ----------------------------------------------------------------------

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.smtp.is_connected and now - conn.idle_since < self._idle_timeout:
                return conn
            self._discard(conn)
        return None

    def _put_idle(self, conn: _Connection) -> None:
        if conn.sent >= self._max_messages or not conn.smtp.is_connected:
            self._quit(conn)
            return
        conn.idle_since = time.monotonic()
        self._idle.append(conn)
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().call_later(self._idle_timeout, self._reap)

    def _reap(self) -> None:
        self._reaper = None
        now = time.monotonic()
        keep = []
        for conn in self._idle:
            if now - conn.idle_since >= self._idle_timeout:
                self._quit(conn)
            else:
                keep.append(conn)
        self._idle = keep
        if keep:
            wait = self._idle_timeout - (now - min(c.idle_since for c in keep))
            self._reaper = asyncio.get_running_loop().call_later(max(wait, 0.1), self._reap)

    def _quit(self, conn: _Connection) -> None:
        """Say goodbye politely in the background (QUIT), closing hard if that fails."""
        task = asyncio.create_task(self._quit_now(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _quit_now(self, conn: _Connection) -> None:
        try:
            async with asyncio.timeout(min(self._timeout, 5.0)):
                await conn.smtp.quit()
        except Exception:
            self._discard(conn)

    @staticmethod
    def _discard(conn: _Connection) -> None:
        with contextlib.suppress(Exception):
            conn.smtp.close()

    async def close(self) -> None:
        """Close every connection (QUIT on the idle ones)."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        idle, self._idle = self._idle, []
        for conn in idle:
            self._quit(conn)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
