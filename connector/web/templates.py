"""Jinja2 environment for the server-rendered pages (autoescaped: workflow text is hostile)."""

from __future__ import annotations

import jinja2
from aiohttp import web

from .keys import templates_key


def make_templates() -> jinja2.Environment:
    """The template environment, loaded from the package."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("connector.web", "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


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
