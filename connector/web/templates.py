"""Jinja2 environment for the server-rendered pages (autoescaped: workflow text is hostile)."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
from aiohttp import web

from .keys import templates_key


def make_templates() -> jinja2.Environment:
    """The template environment, loaded from the package."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("connector.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(until=until, ago=ago, utc=utc)
    return env


def _parse(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _words(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = round(seconds / size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "less than a minute"


def until(stamp: str) -> str:
    """ "in 23 hours" for an ISO time in the future ("already" when past)."""
    left = (_parse(stamp) - datetime.now(UTC)).total_seconds()
    return f"in {_words(left)}" if left > 0 else "now"


def ago(stamp: str) -> str:
    """ "5 minutes ago" for an ISO time in the past."""
    return f"{_words(max(0.0, (datetime.now(UTC) - _parse(stamp)).total_seconds()))} ago"


def utc(stamp: str) -> str:
    """An ISO time as "2026-11-26 08:46 UTC"."""
    return _parse(stamp).strftime("%Y-%m-%d %H:%M UTC")


def render(
    request: web.Request, name: str, *, status: int = 200, **context: object
) -> web.Response:
    """Render a page with the standard security headers."""
    html = request.app[templates_key].get_template(name).render(**context)
    return web.Response(
        text=html,
        status=status,
        content_type="text/html",
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:;"
                " form-action 'self'; frame-ancestors 'none'; frame-src 'self'"
            ),
        },
    )
