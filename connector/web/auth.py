"""API key checks: Bearer, X-API-Key, Basic with the key as password, or the operator's own
header (`api_key_header`, e.g. for n8n's Header Auth credential); constant time."""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from ..errors import Unauthorized
from .keys import settings_key


def presented_key(request: web.Request) -> str | None:
    """The key the caller presented, in whichever supported header they used."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return password or user
    return request.headers.get("X-API-Key") or None


def key_matches(presented: str, keys: list[str]) -> bool:
    """Compare against every configured key without short-circuiting on the first mismatch."""
    candidate = presented.encode("utf-8")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(candidate, key.encode("utf-8"))
    return matched


def require_api_key(request: web.Request) -> str:
    """The caller's key if it is one of `api_keys` or `operator_keys`; 401 otherwise."""
    settings = request.app[settings_key]
    candidates = [presented_key(request)]
    if settings.api_key_header:
        candidates.append(request.headers.get(settings.api_key_header, "").strip())
    for presented in candidates:
        if presented and key_matches(presented, [*settings.api_keys, *settings.operator_keys]):
            return presented
    raise Unauthorized()


def is_operator_key(request: web.Request, key: str) -> bool:
    """Operator keys may decide in anyone's name; plain API keys only as a flow reviewer."""
    return key_matches(key, request.app[settings_key].operator_keys)
