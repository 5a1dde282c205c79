"""Decides runs whose deadline has passed, also those that passed while the service was down."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from .service import RunService

log = logging.getLogger(__name__)

_BATCH = 500


class DeadlineWatcher:
    """Sleeps until the next deadline (or a new, earlier one), then applies `on_timeout`."""

    def __init__(self, service: RunService, *, max_sleep: float = 30.0) -> None:
        self._service = service
        self._max_sleep = max_sleep
        self._wake = asyncio.Event()
        self._next_at: float | None = None

    def deadline_added(self, deadline: float) -> None:
        """A run was created; wake up if it is due before what we are sleeping towards."""
        if self._next_at is None or deadline < self._next_at:
            self._wake.set()

    async def run(self) -> None:
        """Loop until cancelled."""
        while True:
            self._wake.clear()
            try:
                if await self._service.expire_due(limit=_BATCH) >= _BATCH:
                    continue
                self._next_at = await self._service.store.next_deadline()
            except Exception:
                log.exception("deadline sweep failed; retrying shortly")
                self._next_at = None
            delay = self._max_sleep
            if self._next_at is not None:
                delay = min(delay, max(0.0, self._next_at - self._service.clock()))
            if delay > 0:
                # asyncio.timeout, not wait_for: see JobRunner._sleep (a swallowed cancellation).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()
