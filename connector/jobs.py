"""The durable job runner: claims due jobs, runs their handlers, retries with backoff.

Jobs are written in the same transaction as the change that causes them (a run, a decision), so a
crash between "recorded" and "sent" only delays the work. The runner wakes at once when new work
is recorded and also sweeps on a timer, so nothing waits on a polling interval and nothing is lost
across restarts. Claims are leases, so several runners (or instances) can share one store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from .metrics import Metrics
from .store import JobRecord, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What a handler reports: done, try again later, or failed for good.

    "later" means the handler did not try at all (e.g. a rate limit's next free slot is a while
    away): the job runs again after exactly `retry_after` seconds, and no attempt is counted.
    """

    result: Literal["done", "retry", "failed", "later"]
    last_status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    event: tuple[str, dict[str, Any]] | None = None


Handler = Callable[[JobRecord], Awaitable[Outcome]]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, for at most `give_up_after` seconds per job."""

    base_delay: float = 1.0
    max_delay: float = 600.0
    give_up_after: float = 24 * 3600.0

    def delay(self, attempts: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(attempts, 30)))
        return random.uniform(ceiling / 2, ceiling)


class JobRunner:
    """Runs the handlers registered for each job kind."""

    def __init__(
        self,
        store: Store,
        handlers: dict[str, Handler],
        *,
        retry: RetryPolicy,
        concurrency: int = 64,
        lease: float = 120.0,
        idle_poll: float = 5.0,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._handlers = handlers
        self._kinds = tuple(handlers)
        self._retry = retry
        self._concurrency = concurrency
        self._lease = lease
        self._idle_poll = idle_poll
        self._clock = clock
        self._metrics = metrics or Metrics()
        self._wake = asyncio.Event()
        self._active: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        """New work was recorded: look for it now rather than at the next sweep."""
        self._wake.set()

    async def run(self) -> None:
        """Claim and run due jobs until cancelled."""
        try:
            while True:
                self._wake.clear()
                try:
                    claimed = await self._claim()
                except Exception:
                    log.exception("claiming jobs failed; retrying shortly")
                    claimed = 0
                if claimed and len(self._active) < self._concurrency:
                    continue
                await self._sleep()
        finally:
            for task in list(self._active):
                task.cancel()
            if self._active:
                await asyncio.gather(*self._active, return_exceptions=True)

    async def _claim(self) -> int:
        free = self._concurrency - len(self._active)
        if free <= 0:
            return 0
        jobs = await self._store.claim_jobs(
            self._clock(), limit=free, lease=self._lease, kinds=self._kinds
        )
        # Started in queue order: a channel that paces sends per chat sees them in that order.
        for job in sorted(jobs, key=lambda j: (j.next_at, j.id)):
            task = asyncio.create_task(self._handle(job), name=f"job-{job.kind}-{job.id}")
            self._active.add(task)
            task.add_done_callback(self._finished)
        return len(jobs)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._active.discard(task)
        self._wake.set()

    async def _sleep(self) -> None:
        delay = self._idle_poll
        with contextlib.suppress(Exception):
            next_at = await self._store.next_job_at(self._kinds)
            if next_at is not None:
                delay = min(delay, max(0.0, next_at - self._clock()))
        if delay <= 0 and len(self._active) >= self._concurrency:
            delay = self._idle_poll
        if delay > 0:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that
            # arrives as the wake-up does, and the task then never stops (shutdown hangs).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _handle(self, job: JobRecord) -> None:
        try:
            outcome = await self._handlers[job.kind](job)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("job %s (%s) raised", job.id, job.kind)
            outcome = Outcome("retry", error=f"{type(exc).__name__}: {exc}")
        now = self._clock()
        status: Literal["pending", "done", "failed"] = "pending"
        next_at = now
        if outcome.result == "done":
            status = "done"
        elif outcome.result == "later":
            next_at = now + (outcome.retry_after or 0.0)
        elif outcome.result == "failed" or now - job.created_at >= self._retry.give_up_after:
            status = "failed"
        else:
            wait = self._retry.delay(job.attempts)
            if outcome.retry_after is not None:
                wait = max(wait, outcome.retry_after)
            next_at = now + wait
        attempted = outcome.result != "later"
        self._metrics.inc(
            "hitl_job_attempts_total",
            "Job attempts by kind and outcome",
            kind=job.kind,
            result=status if status != "pending" else outcome.result,
        )
        try:
            await self._store.finish_job(
                job,
                status=status,
                next_at=next_at,
                last_status=outcome.last_status if attempted else job.last_status,
                last_error=outcome.error if attempted else job.last_error,
                event=outcome.event,
                attempted=attempted,
            )
        except Exception:
            # The lease expires and another pass retries the job: at least once, never lost.
            log.exception("recording the outcome of job %s failed", job.id)
