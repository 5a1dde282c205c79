"""POST /telegram/webhook: updates from Telegram, checked by the secret token, recorded, 200."""

from __future__ import annotations

import hmac

from aiohttp import web

from ..errors import BadRequest, Unauthorized
from .bodies import read_json_object
from .keys import telegram_key

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


async def webhook(request: web.Request) -> web.Response:
    """Record the update and answer at once; the job runner processes it."""
    channel = request.app[telegram_key]
    expected = channel.webhook_secret
    given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
    if expected is None or not hmac.compare_digest(given, expected):
        raise Unauthorized("missing or wrong X-Telegram-Bot-Api-Secret-Token")
    update = await read_json_object(request)
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise BadRequest("update_id must be an integer")
    if not -(2**63) <= update_id < 2**63:
        # Both stores keep it as a 64-bit integer; Telegram's own ids are far smaller.
        raise BadRequest("update_id is out of range")
    await channel.receive(update)  # False for a replay; Telegram still gets its 200
    return web.json_response({"ok": True})
