"""Polling mode: a getUpdates long-poll loop, for a connector without a public URL.

Only ONE poller may run per bot: Telegram ends a getUpdates call when another one starts (409
"terminated by other getUpdates request"), so two instances would keep cutting each other off.
Updates are confirmed (the next call's offset) only once they are recorded in the database, so
a crash between "received" and "recorded" makes Telegram send them again; replays are dropped by
the update_id de-duplication.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from .api import ALLOWED_UPDATES, RateLimited, TelegramClient, TelegramError
from .channel import TelegramChannel

log = logging.getLogger(__name__)


class Poller:
    """Long-polls getUpdates and hands each update to the channel."""

    def __init__(
        self,
        client: TelegramClient,
        channel: TelegramChannel,
        *,
        timeout: float,
        max_backoff: float = 60.0,
    ) -> None:
        self._client = client
        self._channel = channel
        self._timeout = int(timeout)
        self._max_backoff = max_backoff
        self._failures = 0

    def _backoff(self) -> float:
        self._failures += 1
        ceiling = min(self._max_backoff, 0.5 * 2 ** min(self._failures, 10))
        return random.uniform(ceiling / 2, ceiling)

    async def run(self) -> None:
        """Poll until cancelled."""
        offset: int | None = None
        log.info("Telegram polling started")
        while True:
            params: dict[str, Any] = {"timeout": self._timeout, "allowed_updates": ALLOWED_UPDATES}
            if offset is not None:
                params["offset"] = offset
            try:
                updates = await self._client.call(
                    "getUpdates", params, timeout=self._timeout + 15.0
                )
            except RateLimited as exc:
                await asyncio.sleep(exc.retry_after or 1.0)
                continue
            except TelegramError as exc:
                delay = self._backoff()
                if exc.status == 409:
                    log.error(
                        "Telegram refused getUpdates (%s): a webhook is set for this bot or"
                        " another poller runs; only one may. Retrying in %.0fs",
                        exc.description,
                        delay,
                    )
                else:
                    log.warning("Telegram getUpdates failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            self._failures = 0
            offset = await self._record(updates if isinstance(updates, list) else [], offset)

    async def _record(self, updates: list[Any], offset: int | None) -> int | None:
        for update in updates:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not isinstance(update_id, int):
                continue
            try:
                await self._channel.receive(update)
            except Exception:
                # Not confirmed: Telegram sends it (and those after it) again on the next call.
                log.exception("recording Telegram update %s failed", update_id)
                await asyncio.sleep(self._backoff())
                return offset
            offset = update_id + 1
        return offset
