"""A real SMTP server (aiosmtpd, in a thread) on 127.0.0.1 that records what it receives."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from .conftest import eventually


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def self_signed_context(directory: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for 127.0.0.1."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@dataclass
class Received:
    """One message as the server got it."""

    peer: Any
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def to(self) -> str:
        return self.rcpt_tos[0]


@dataclass
class MailServer:
    """Records messages, the connections that spoke SMTP, and every RCPT attempt.

    `rcpt_replies` maps an address to the reply its RCPT gets (e.g. "550 5.1.1 no such user");
    `fail_rcpt_times` makes the first N RCPTs of an address answer `451` (a transient failure).
    """

    port: int = field(default_factory=free_port)
    tls_context: ssl.SSLContext | None = None  # offered through STARTTLS
    implicit_tls: ssl.SSLContext | None = None  # TLS from the first byte (port 465 style)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    fail_rcpt_times: dict[str, int] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    connections: set[Any] = field(default_factory=set)
    rcpt_attempts: list[str] = field(default_factory=list)
    _sessions: list[Any] = field(default_factory=list)
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> MailServer:
        kwargs: dict[str, Any] = {}
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
        if self.implicit_tls is not None:
            kwargs["ssl_context"] = self.implicit_tls
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10, **kwargs
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        """Go down like a real server: drop every open connection, then stop listening."""
        if self._controller is None:
            return
        controller, self._controller = self._controller, None
        asyncio.run_coroutine_threadsafe(self._drop_connections(), controller.loop).result(10)
        controller.stop()

    async def _drop_connections(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for smtp in sessions:
            if smtp.transport is not None:
                smtp.transport.close()
        for _ in range(3):  # let the transports finish closing their sockets
            await asyncio.sleep(0)

    def smtp(self, **extra: Any) -> dict[str, Any]:
        """The `[smtp]` settings that point the connector at this server."""
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "from": "Approvals <approvals@example.com>",
            "timeout": "5s",
            **extra,
        }

    def to(self, address: str) -> list[EmailMessage]:
        """Messages received for `address`, in arrival order."""
        return [r.message for r in self.received if address in r.rcpt_tos]

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least `count` messages arrived."""

        async def enough() -> list[Received] | None:
            return list(self.received) if len(self.received) >= count else None

        result: list[Received] = await eventually(enough, timeout=timeout)
        return result


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self.server._lock:
            self.server.connections.add(session.peer)
            if server not in self.server._sessions:
                self.server._sessions.append(server)
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        address = address.lower()
        with self.server._lock:
            self.server.rcpt_attempts.append(address)
            if self.server.fail_rcpt_times.get(address, 0) > 0:
                self.server.fail_rcpt_times[address] -= 1
                return "451 4.3.0 try again later"
        reply = self.server.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(
            envelope.original_content or envelope.content, policy=policy.default
        )
        assert isinstance(message, EmailMessage)
        self.server.received.append(
            Received(
                peer=session.peer,
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
            )
        )
        return "250 Message accepted"
