"""One place turns exceptions into the error body (JSON for programs, a page for people)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from ..errors import BodyTooLarge, ConnectorError, ValidationFailed
from .templates import render

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _for_people(request: web.Request) -> bool:
    return request.path.startswith(("/r/", "/dev/", "/flows"))


def validation_details(error: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without the input values (they may be large or secret)."""
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in error.errors()
    ]


def error_response(request: web.Request, error: ConnectorError) -> web.StreamResponse:
    """The response for a ConnectorError on this request."""
    if _for_people(request):
        return render(request, "error.html", status=error.status, message=error.message)
    body: dict[str, Any] = {"ok": False, "error": error.message, "status": error.status}
    if isinstance(error.details, list):
        body["errors"] = error.details
    return web.json_response(body, status=error.status)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to `{"ok": false, "error": …, "status": N}` (or a friendly page)."""
    try:
        return await handler(request)
    except ConnectorError as exc:
        return error_response(request, exc)
    except ValidationError as exc:
        details = validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid"}
        where = ".".join(first["loc"]) or "body"
        return error_response(
            request, ValidationFailed(f"{where}: {first['msg']}", details=details)
        )
    except web.HTTPRequestEntityTooLarge:
        return error_response(request, BodyTooLarge())
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = ConnectorError(exc.reason)
        error.status = exc.status
        response = error_response(request, error)
        if exc.status == 405 and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = ConnectorError("internal error")
        error.status = 500
        return error_response(request, error)
