"""A fake Telegram Bot API: a small aiohttp app on a random port that behaves like Telegram.

It serves `/bot<token>/<method>` with `{"ok": true, "result": …}`, records every call, and refuses
what Telegram refuses: malformed HTML ("can't parse entities"), callback_data over 64 bytes, URL
buttons to local addresses, a second answer to a callback query, and more than one message per
second to a chat (429 with parameters.retry_after). getUpdates has Telegram's offset and long-poll
semantics, so tests feed updates to the connector's poller with `push`.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.test_utils import TestServer

TOKEN = "123456:TEST-fake-token_0123456789"
BOT = {"id": 123456, "is_bot": True, "first_name": "Approvals", "username": "approvals_bot"}

_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
    "code", "pre", "blockquote", "tg-emoji",
}  # fmt: skip
_TAG = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[a-zA-Z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))?)*)\s*>"
)
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot);|#(\d+);|#x([0-9a-fA-F]+);)")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


class BadRequest(Exception):
    """Telegram's 400 answer."""


def parse_html(text: str) -> str:
    """The plain text of Telegram HTML; BadRequest "can't parse entities" like Telegram."""
    plain: list[str] = []
    stack: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        offset = len(text[:pos].encode("utf-8"))
        if char == "<":
            match = _TAG.match(text, pos)
            if match is None:
                raise BadRequest(
                    f"Bad Request: can't parse entities: unexpected character at byte offset"
                    f" {offset}"
                )
            closing, name = match.group(1), match.group(2).lower()
            if name not in _TAGS:
                raise BadRequest(
                    f'Bad Request: can\'t parse entities: unsupported start tag "{name}" at byte'
                    f" offset {offset}"
                )
            if closing:
                if not stack or stack[-1] != name:
                    raise BadRequest(
                        f"Bad Request: can't parse entities: unmatched end tag at byte offset"
                        f' {offset}, expected "</{stack[-1] if stack else ""}>", found "</{name}>"'
                    )
                stack.pop()
            else:
                if name == "a" and "href" not in match.group(3):
                    raise BadRequest("Bad Request: can't parse entities: a tag needs href")
                stack.append(name)
            pos = match.end()
        elif char == "&":
            match = _ENTITY.match(text, pos)
            if match is None:
                raise BadRequest(
                    f"Bad Request: can't parse entities: unsupported entity at byte offset {offset}"
                )
            if match.group(1):
                plain.append(_NAMED[match.group(1)])
            else:
                plain.append(
                    chr(int(match.group(2)) if match.group(2) else int(match.group(3), 16))
                )
            pos = match.end()
        elif char == ">":
            raise BadRequest(
                f"Bad Request: can't parse entities: unexpected > at byte offset {offset}"
            )
        else:
            plain.append(char)
            pos += 1
    if stack:
        raise BadRequest(
            f"Bad Request: can't parse entities: can't find end tag corresponding to start tag"
            f' "{stack[-1]}"'
        )
    return "".join(plain)


def _check_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    if isinstance(markup, str):
        markup = json.loads(markup)
    rows = markup.get("inline_keyboard")
    if not isinstance(rows, list):
        raise BadRequest("Bad Request: object expected as reply markup")
    for row in rows:
        for button in row:
            if not button.get("text"):
                raise BadRequest("Bad Request: text buttons are unallowed in the inline keyboard")
            if "callback_data" in button:
                size = len(str(button["callback_data"]).encode("utf-8"))
                if not 1 <= size <= 64:
                    raise BadRequest("Bad Request: BUTTON_DATA_INVALID")
            elif "url" in button:
                parts = urlsplit(button["url"])
                host = (parts.hostname or "").lower()
                local = host == "localhost" or "." not in host
                with suppress(ValueError):
                    local = not ipaddress.ip_address(host).is_global
                if parts.scheme not in ("http", "https", "tg") or local:
                    raise BadRequest("Bad Request: BUTTON_URL_INVALID")
            else:
                raise BadRequest('Bad Request: can\'t find field "callback_data"')
    return markup if rows else None


@dataclass
class Call:
    """One request the fake answered."""

    method: str
    params: dict[str, Any]
    at: float
    status: int
    result: Any = None
    description: str | None = None


@dataclass
class FakeTelegram:
    """The fake's state; tests read `calls` and `messages` and feed updates with `push`."""

    token: str = TOKEN
    chat_interval: float = 1.0
    global_rate: int = 30
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    webhook: dict[str, Any] | None = None
    failures: list[tuple[str, int, str, int | None]] = field(default_factory=list)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _next_update_id: int = 700_000
    _next_message_id: int = 1
    _queries: dict[str, bool] = field(default_factory=dict)
    _last_sent: dict[int, float] = field(default_factory=dict)
    _recent: deque[float] = field(default_factory=deque)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _poll_generation: int = 0
    _closing: bool = False

    # -- what tests use ---------------------------------------------------------------------

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[Call]:
        """Calls of `method` (only the successful or failed ones if `ok` is given)."""
        return [
            c for c in self.calls if c.method == method and (ok is None or (c.status == 200) == ok)
        ]

    def sent(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent (to one chat), in order."""
        return [
            m
            for m in sorted(self.messages.values(), key=lambda m: m["message_id"])
            if chat_id is None or m["chat"]["id"] == chat_id
        ]

    def fail(self, method: str, status: int, description: str, *, retry_after: int | None = None,
             times: int = 1) -> None:  # fmt: skip
        """Answer the next `times` calls of `method` with this error."""
        self.failures.extend([(method, status, description, retry_after)] * times)

    async def push(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (an update_id is assigned)."""
        self._next_update_id += 1
        update = {"update_id": self._next_update_id, **update}
        async with self._changed:
            self._updates.append(update)
            self._changed.notify_all()
        return update

    def press(self, user: dict[str, Any], message: dict[str, Any], data: str) -> dict[str, Any]:
        """An update (without update_id) for `user` pressing a callback button of `message`."""
        query_id = secrets.token_hex(8)
        self._queries[query_id] = False
        public = {k: v for k, v in message.items() if k != "html"}
        return {
            "callback_query": {
                "id": query_id,
                "from": user,
                "message": public,
                "chat_instance": str(message["chat"]["id"]),
                "data": data,
            }
        }

    def text(self, user: dict[str, Any], chat: dict[str, Any], text: str) -> dict[str, Any]:
        """An update (without update_id) for `user` writing `text` in `chat`."""
        self._next_message_id += 1
        return {
            "message": {
                "message_id": self._next_message_id,
                "from": user,
                "chat": chat,
                "date": int(time.time()),
                "text": text,
            }
        }

    def answers(self) -> list[dict[str, Any]]:
        """The params of every accepted answerCallbackQuery."""
        return [c.params for c in self.calls_to("answerCallbackQuery", ok=True)]

    # -- the HTTP side ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(await request.post())
        now = time.monotonic()
        # Recorded on arrival (status 0 until answered), so a long poll shows while it waits.
        call = Call(method, params, now, 0)
        self.calls.append(call)
        status, result, description, extra = 200, None, None, None
        try:
            result = await self._dispatch(method, params, now)
        except BadRequest as exc:
            status, description = 400, str(exc)
        except _Error as exc:
            status, description, extra = exc.status, exc.description, exc.parameters
        call.status, call.result, call.description = status, result, description
        if status == 200:
            return web.json_response({"ok": True, "result": result})
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if extra:
            body["parameters"] = extra
        return web.json_response(body, status=status)

    async def _dispatch(self, method: str, params: dict[str, Any], now: float) -> Any:
        for index, (name, status, description, retry_after) in enumerate(self.failures):
            if name == method:
                del self.failures[index]
                raise _Error(
                    status, description, {"retry_after": retry_after} if retry_after else None
                )
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            raise _Error(404, "Not Found")
        return await handler(params) if inspect.iscoroutinefunction(handler) else handler(params)

    def _flood_check(self, chat_id: int, now: float) -> None:
        last = self._last_sent.get(chat_id)
        if last is not None and now - last < self.chat_interval:
            wait = max(1, math.ceil(self.chat_interval - (now - last)))
            raise _Error(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        while self._recent and self._recent[0] < now - 1.0:
            self._recent.popleft()
        if len(self._recent) >= self.global_rate:
            raise _Error(429, "Too Many Requests: retry after 1", {"retry_after": 1})
        self._last_sent[chat_id] = now
        self._recent.append(now)

    def _render(self, params: dict[str, Any]) -> tuple[str, str]:
        source = str(params.get("text") or "")
        plain = parse_html(source) if params.get("parse_mode") == "HTML" else source
        if not plain.strip():
            raise BadRequest("Bad Request: message text is empty")
        if len(plain.encode("utf-16-le")) // 2 > 4096:
            raise BadRequest("Bad Request: message is too long")
        return source, plain

    def _m_getMe(self, params: dict[str, Any]) -> Any:
        return BOT

    def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        chat_id = int(params["chat_id"])
        if chat_id in self.blocked:
            raise _Error(403, "Forbidden: bot was blocked by the user")
        source, plain = self._render(params)
        markup = _check_markup(params.get("reply_markup"))
        self._flood_check(chat_id, time.monotonic())
        self._next_message_id += 1
        message = {
            "message_id": self._next_message_id,
            "from": BOT,
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "date": int(time.time()),
            "text": plain,
            "html": source,
            "link_preview_options": params.get("link_preview_options"),
        }
        if markup:
            message["reply_markup"] = markup
        self.messages[(chat_id, message["message_id"])] = message
        return {k: v for k, v in message.items() if k != "html"}

    def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        key = (int(params["chat_id"]), int(params["message_id"]))
        message = self.messages.get(key)
        if message is None:
            raise BadRequest("Bad Request: message to edit not found")
        source, plain = self._render(params)
        markup = _check_markup(params.get("reply_markup"))
        self._flood_check(key[0], time.monotonic())
        if plain == message["text"] and markup == message.get("reply_markup"):
            raise BadRequest(
                "Bad Request: message is not modified: specified new message content and reply"
                " markup are exactly the same as a current content and reply markup of the message"
            )
        message.update(text=plain, html=source, edit_date=int(time.time()))
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        return {k: v for k, v in message.items() if k != "html"}

    def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        query_id = str(params.get("callback_query_id"))
        if self._queries.get(query_id, True):
            raise BadRequest(
                "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        self._queries[query_id] = True
        return True

    def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        url = str(params.get("url") or "")
        if not url:
            self.webhook = None
            return True
        if not url.startswith("https://"):
            raise BadRequest("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise BadRequest("Bad Request: secret token contains unallowed characters")
        self.webhook = dict(params)
        return True

    def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        self.webhook = None
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        return {
            "url": (self.webhook or {}).get("url", ""),
            "pending_update_count": len(self._updates),
        }

    async def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        if self.webhook:
            raise _Error(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use"
                " deleteWebhook to delete the webhook first",
            )
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        async with self._changed:
            self._poll_generation += 1
            generation = self._poll_generation
            self._changed.notify_all()
            # An offset confirms every update before it: Telegram forgets them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and not self._closing:
                if generation != self._poll_generation:
                    raise _Error(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only"
                        " one bot instance is running",
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    break
            return self._updates[:limit]

    async def close(self) -> None:
        """Release pending long polls (before the server stops)."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()


class _Error(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


def make_app(fake: FakeTelegram) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", fake.handle)
    return app


@asynccontextmanager
async def start_fake_telegram(
    fake: FakeTelegram | None = None, *, port: int | None = None
) -> AsyncIterator[FakeTelegram]:
    """Run the fake on 127.0.0.1 (a random port unless given); `fake.url` is its api_url."""
    fake = fake or FakeTelegram()
    fake._closing = False
    server = TestServer(make_app(fake), host="127.0.0.1", port=port)
    await server.start_server()
    fake.url = f"http://127.0.0.1:{server.port}"
    try:
        yield fake
    finally:
        await fake.close()
        await server.close()
