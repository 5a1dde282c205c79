"""The dev mailbox: messages the connector would have sent, when no SMTP server is configured."""

from __future__ import annotations

from aiohttp import web

from ..models import iso
from .keys import store_key
from .templates import render


async def mailbox(request: web.Request) -> web.Response:
    """GET /dev/mailbox: newest first, links clickable."""
    messages = await request.app[store_key].list_mail(100)
    return render(
        request,
        "mailbox.html",
        messages=[(m, iso(m.at)) for m in messages],
    )
