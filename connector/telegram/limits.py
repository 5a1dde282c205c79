"""Telegram's flood limits as token buckets: about one message a second per chat, ~30/s overall.

Each send reserves the next free slot of its chat, in the order the jobs reach the limiter, so
prompts to one chat go out in order and spaced. A slot only a moment away is waited for; a slot
further away is held for the job, which is put back in the queue until then (the caller turns
`Deferred` into `Outcome("later")`), so a burst to one chat never ties up the job runner.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

# Telegram measures arrival, we measure departure: keep a little room for network jitter.
_MARGIN = 0.05
_FORGET_AFTER = 600.0


class Deferred(Exception):
    """The chat's next free slot is `delay` seconds away; come back then."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"rate limited for {delay:.2f}s")
        self.delay = delay


class Bucket:
    """A token bucket of depth one (GCRA): one event every `interval` seconds at most."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next_free = 0.0

    def reserve(self, now: float) -> float:
        """The time of the next free slot, which is now taken."""
        slot = max(now, self._next_free)
        self._next_free = slot + self.interval
        return slot

    def hold_off(self, until: float) -> None:
        """Nothing may go out before `until` (Telegram said so with a 429)."""
        self._next_free = max(self._next_free, until)

    def idle(self, now: float) -> bool:
        return self._next_free < now - _FORGET_AFTER


class Limiter:
    """Per-chat and global buckets shared by every Telegram job of this process."""

    def __init__(
        self,
        *,
        chat_rate: float,
        global_rate: float,
        max_wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._chat_interval = 1.0 / chat_rate + _MARGIN
        self._global = Bucket(1.0 / global_rate)
        self._chats: dict[int, Bucket] = {}
        self._held: dict[str, tuple[float, float]] = {}  # key → (slot, reserved at)
        self._max_wait = max_wait
        self._clock = clock

    def _bucket(self, chat_id: int) -> Bucket:
        bucket = self._chats.get(chat_id)
        if bucket is None:
            bucket = self._chats[chat_id] = Bucket(self._chat_interval)
        return bucket

    def claim(self, key: str, chat_id: int) -> float:
        """Take (or find the held) slot for `key` in the chat and return it.

        Call before any await in a handler: the order of calls is the order of sending. Raises
        Deferred when the slot is more than `max_wait` away; the slot stays held for `key`.
        """
        now = self._clock()
        held = self._held.pop(key, None)
        slot = held[0] if held else self._bucket(chat_id).reserve(now)
        if slot - now > self._max_wait:
            self._held[key] = (slot, now)
            self._forget(now)
            raise Deferred(slot - now)
        return slot

    async def pace(self, slot: float) -> None:
        """Sleep until the claimed chat slot, then until the next global slot."""
        delay = slot - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        delay = self._global.reserve(self._clock()) - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)

    def hold_off(self, chat_id: int, seconds: float) -> None:
        """Telegram answered 429 for this chat: push its next slot back."""
        self._bucket(chat_id).hold_off(self._clock() + seconds)

    def release(self, key: str) -> None:
        """The job that held a slot will not come back for it."""
        self._held.pop(key, None)

    def _forget(self, now: float) -> None:
        for key, (_, at) in list(self._held.items()):
            if at < now - _FORGET_AFTER:
                del self._held[key]
        for chat_id, bucket in list(self._chats.items()):
            if bucket.idle(now):
                del self._chats[chat_id]
