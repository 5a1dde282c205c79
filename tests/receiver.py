"""A real HTTP server that records resume callbacks, for tests and benchmarks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass
class Received:
    """One request the receiver got."""

    path_qs: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Records every POST; answers with queued statuses first, then `default_status`."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    statuses: list[tuple[int, str]] = field(default_factory=list)
    default_status: int = 200
    delay: float = 0.0  # seconds to wait before answering (a hanging receiver)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay and not self.statuses:
            await asyncio.sleep(self.delay)
        status, text = self.statuses.pop(0) if self.statuses else (self.default_status, "ok")
        self.received.append(Received(request.path_qs, dict(request.headers), body))
        self.arrived.set()
        return web.Response(status=status, text=text)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until at least `count` requests arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@asynccontextmanager
async def start_receiver(port: int | None = None) -> AsyncIterator[Receiver]:
    """Run a receiver on 127.0.0.1 (a random port unless given)."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    receiver.url = f"http://127.0.0.1:{server.port}"
    try:
        yield receiver
    finally:
        await server.close()
