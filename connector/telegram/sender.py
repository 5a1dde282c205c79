"""Sending within Telegram's limits, and turning Telegram's answers into job outcomes."""

from __future__ import annotations

import logging
from typing import Any

from ..jobs import Outcome
from .api import RateLimited, TelegramClient, TelegramError
from .limits import Deferred, Limiter

log = logging.getLogger(__name__)

NO_PREVIEW = {"is_disabled": True}


class Sender:
    """A TelegramClient behind the flood-limit buckets."""

    def __init__(self, client: TelegramClient, limiter: Limiter) -> None:
        self.client = client
        self.limiter = limiter

    def claim(self, key: str, chat_id: int) -> float:
        """Reserve the chat's next slot for `key` (call before any await); Deferred if far."""
        return self.limiter.claim(key, chat_id)

    async def to_chat(self, slot: float, chat_id: int, method: str, params: dict[str, Any]) -> Any:
        """Wait for the claimed slot, then call a method that writes to `chat_id`."""
        await self.limiter.pace(slot)
        try:
            return await self.client.call(method, {"chat_id": chat_id, **params})
        except RateLimited as exc:
            self.limiter.hold_off(chat_id, exc.retry_after or 1.0)
            raise

    async def message(self, key: str, chat_id: int, text: str, **params: Any) -> Any:
        """Send an HTML message to a chat (claims its slot now)."""
        slot = self.claim(key, chat_id)
        return await self.to_chat(
            slot,
            chat_id,
            "sendMessage",
            {"text": text, "parse_mode": "HTML", "link_preview_options": NO_PREVIEW, **params},
        )

    async def answer(self, query_id: str, text: str, *, alert: bool = False) -> None:
        """Answer a button press (not rate limited; Telegram drops answers after ~15 s)."""
        try:
            await self.client.call(
                "answerCallbackQuery",
                {"callback_query_id": query_id, "text": text, "show_alert": alert},
                timeout=10.0,
            )
        except TelegramError as exc:
            log.warning("could not answer a Telegram button press: %s", exc)


def outcome_for(exc: Exception) -> Outcome:
    """The job outcome for a failed Telegram call (or a deferral by the limiter)."""
    if isinstance(exc, Deferred):
        return Outcome("later", retry_after=exc.delay)
    if isinstance(exc, RateLimited):
        # Expected under load and handled: honour Telegram's retry_after, no alarm.
        log.info("Telegram flood control on %s: retry in %.0fs", exc.method, exc.retry_after)
        return Outcome("retry", last_status=429, error=str(exc), retry_after=exc.retry_after)
    if isinstance(exc, TelegramError) and exc.temporary:
        log.warning("Telegram unavailable (%s); will retry", exc)
        return Outcome("retry", last_status=exc.status, error=str(exc))
    if isinstance(exc, TelegramError):
        log.warning("Telegram refused %s", exc)
        return Outcome("failed", last_status=exc.status, error=str(exc))
    raise exc
