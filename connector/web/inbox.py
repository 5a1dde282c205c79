"""The dev inbox: a resume target built into the connector, so a newcomer can watch a decision
arrive without running a receiver of their own. Only with the dev mailbox (no SMTP configured);
kept in memory, newest first, because it is a development aid and never part of a real flow.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from dataclasses import dataclass

from aiohttp import web

from ..models import iso
from .keys import inbox_key
from .templates import render

KEEP = 100


@dataclass(frozen=True)
class Delivery:
    """One resume call the dev inbox received."""

    at: float
    headers: dict[str, str]
    body: str


def new_inbox() -> deque[Delivery]:
    """The bounded in-memory list of received calls."""
    return deque(maxlen=KEEP)


async def receive(request: web.Request) -> web.Response:
    """POST /dev/inbox: record the call and answer 204, like a well-behaved resume target."""
    raw = await request.read()
    text = raw.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    shown = {
        k: v for k, v in request.headers.items() if k.lower().startswith(("webhook-", "content-"))
    }
    request.app[inbox_key].appendleft(Delivery(time.time(), shown, text))
    return web.Response(status=204)


async def show(request: web.Request) -> web.Response:
    """GET /dev/inbox: what arrived, newest first."""
    return render(
        request, "inbox.html", deliveries=[(d, iso(d.at)) for d in request.app[inbox_key]]
    )
