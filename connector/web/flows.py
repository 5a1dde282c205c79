"""Flows and their statistics: the JSON API and a small operator page."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..config import parse_duration
from ..errors import BadRequest
from ..models import iso
from ..stats import FlowStats, flow_stats
from .auth import key_matches, require_api_key
from .keys import service_key, settings_key, store_key
from .templates import render

SESSION_COOKIE = "hitl_operator"
SESSION_SALT = "hitl-connector.operator-session.v1"
SESSION_AGE = 12 * 3600


def _since(raw: str | None, now: float) -> float:
    """`since` as a timestamp: ISO 8601, or a duration back from now ("30d")."""
    if not raw:
        return 0.0
    try:
        return now - parse_duration(raw).total_seconds()
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise BadRequest("since must be an ISO 8601 time or a duration such as '30d'") from exc


def _flow_summary(name: str, request: web.Request) -> dict[str, Any]:
    flow = request.app[service_key].flow(name)
    return {
        "name": name,
        "title": flow.title or name,
        "reviewers": [r.display_name for r in flow.reviewers],
        "channels": flow.channels,
        "timeout": flow.timeout.total_seconds(),
        "on_timeout": flow.on_timeout,
        "required_approvals": flow.required_approvals,
        "auto_approve": flow.auto_approve,
        "require_review": flow.require_review,
        "auto_approve_mode": flow.auto_approve_mode if flow.auto_approve else None,
    }


async def _stats(request: web.Request, name: str, since_raw: str | None) -> FlowStats:
    flow = request.app[service_key].flow(name)
    since = _since(since_raw, time.time())
    counts = await request.app[store_key].flow_counts(name, since)
    return flow_stats(name, flow, counts, iso(since) if since else None)


async def list_flows(request: web.Request) -> web.Response:
    """GET /v1/flows: the configured flows and their policies."""
    require_api_key(request)
    names = list(request.app[settings_key].flows)
    return web.json_response({"flows": [_flow_summary(n, request) for n in names]})


async def get_flow_stats(request: web.Request) -> web.Response:
    """GET /v1/flows/{flow}/stats?since=: decisions, rates, shadow agreement, recommendation."""
    require_api_key(request)
    stats = await _stats(request, request.match_info["flow"], request.query.get("since"))
    return web.Response(body=stats.model_dump_json(), content_type="application/json")


def _serializer(request: web.Request) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(request.app[service_key].signer.keys, salt=SESSION_SALT)


def _logged_in(request: web.Request) -> bool:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return False
    try:
        _serializer(request).loads(cookie, max_age=SESSION_AGE)
    except BadSignature:
        return False
    return True


async def flows_page(request: web.Request) -> web.Response:
    """GET /flows: the operator page (login form until an API key was given)."""
    if not _logged_in(request):
        return render(request, "login.html")
    rows = []
    for name in request.app[settings_key].flows:
        rows.append((_flow_summary(name, request), await _stats(request, name, None)))
    return render(request, "flows.html", rows=rows)


async def login(request: web.Request) -> web.StreamResponse:
    """POST /flows/login: trade an API key for a signed, HttpOnly session cookie."""
    form = await request.post()
    key = form.get("api_key")
    settings = request.app[settings_key]
    if not isinstance(key, str) or not key_matches(
        key, [*settings.api_keys, *settings.operator_keys]
    ):
        return render(request, "login.html", status=401, error="That key is not valid.")
    response = web.HTTPSeeOther("/flows")
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(request).dumps({"at": int(time.time())}),
        max_age=SESSION_AGE,
        httponly=True,
        samesite="Strict",
        secure=settings.public_url.startswith("https://"),
        path="/flows",
    )
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """POST /flows/logout: forget the session."""
    response = web.HTTPSeeOther("/flows")
    response.del_cookie(SESSION_COOKIE, path="/flows")
    raise response
