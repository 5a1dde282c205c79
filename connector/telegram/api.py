"""A small Bot API client on aiohttp with a configurable base URL (a local Bot API server, a fake).

Every method is a POST of a JSON object to `{api_url}/bot{token}/{method}`; the answer is
`{"ok": true, "result": …}` or `{"ok": false, "error_code": N, "description": …, "parameters": …}`.
Errors become exceptions that say whether trying again makes sense. The token is part of the URL,
so no URL and no library error text that may contain it ever reaches a log or an exception.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

ALLOWED_UPDATES = ["callback_query", "message"]


class TelegramError(Exception):
    """Telegram refused the call (or could not be reached)."""

    def __init__(
        self,
        method: str,
        description: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{method}: {description}")
        self.method = method
        self.description = description
        self.status = status
        self.retry_after = retry_after

    @property
    def temporary(self) -> bool:
        """Worth trying again later: network trouble, 5xx, flood control, a token being fixed."""
        return self.status is None or self.status >= 500 or self.status in (401, 404, 409, 429)


class TelegramUnavailable(TelegramError):
    """No answer: connection refused, reset, timed out, or not JSON (a proxy's error page)."""


class RateLimited(TelegramError):
    """429 Too Many Requests; `retry_after` says when Telegram will accept the next message."""


class TelegramClient:
    """Calls Bot API methods. One per bot; close it with `close()`."""

    def __init__(self, token: str, *, api_url: str, timeout: float = 15.0) -> None:
        self._token = token
        self._base = f"{api_url.rstrip('/')}/bot{token}/"
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "<token>")

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """The method's `result`; raises TelegramError (or a subclass)."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                self._base + method,
                json=params or {},
                timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
            ) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = self._redact(str(exc)) or "timed out"
            raise TelegramUnavailable(method, f"{type(exc).__name__}: {reason}") from None
        try:
            body = json.loads(raw)
        except ValueError:
            raise TelegramUnavailable(
                method, f"HTTP {status} with a body that is not JSON", status=status
            ) from None
        if not isinstance(body, dict):
            raise TelegramUnavailable(method, f"HTTP {status}: unexpected answer", status=status)
        if body.get("ok") is True:
            return body.get("result")
        code = body.get("error_code") or status
        description = self._redact(str(body.get("description") or f"HTTP {status}"))
        parameters = body.get("parameters") or {}
        if code == 429:
            retry_after = float(parameters.get("retry_after") or 1)
            raise RateLimited(method, description, status=429, retry_after=retry_after)
        raise TelegramError(method, description, status=int(code))

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None
            # Let aiohttp close the transports before the loop goes away.
            await asyncio.sleep(0)
