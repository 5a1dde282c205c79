"""Reading request bodies and parameters, with clear 400/413/422 errors."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ..errors import BadRequest

M = TypeVar("M", bound=BaseModel)

# Deep enough for any real action; shallow enough that storing and rendering never recurse far.
MAX_DEPTH = 64
# JSON may escape a UTF-16 surrogate without its pair ("\ud800"); no database can store that.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object; 400 when it is not one (413 when too large)."""
    raw = await request.read()
    if not raw.strip():
        raise BadRequest("request body is empty; send a JSON object")
    data = loads_untrusted(raw, "request body")
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise BadRequest("request body contains an unpaired UTF-16 surrogate escape") from exc
    return data


def loads_untrusted(text: str | bytes, what: str, *, invalid: str | None = None) -> Any:
    """Parse JSON from outside; 400 naming `what` when it is not JSON (`invalid` says how) or
    is nested deeper than MAX_DEPTH."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(invalid or f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise BadRequest(f"{what} is nested deeper than {MAX_DEPTH} levels") from exc
    if _depth(data) > MAX_DEPTH:
        raise BadRequest(f"{what} is nested deeper than {MAX_DEPTH} levels")
    return data


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]; 400 otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name} must be a whole number") from exc
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


def _depth(value: Any) -> int:
    """Nesting depth of a JSON value, without recursion (the input is untrusted)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if level > MAX_DEPTH:
            break
        children = item.values() if isinstance(item, dict) else item
        if isinstance(item, dict | list):
            stack.extend((child, level + 1) for child in children)
    return deepest


async def parse_body(request: web.Request, model: type[M]) -> M:
    """The body validated against `model` (422 with details when it does not fit)."""
    return model.model_validate(await read_json_object(request))


def json_model(
    model: BaseModel, *, status: int = 200, exclude: set[str] | None = None
) -> web.Response:
    """A pydantic model as a JSON response."""
    return web.Response(
        body=model.model_dump_json(by_alias=True, exclude=exclude),
        status=status,
        content_type="application/json",
    )
