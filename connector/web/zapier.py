"""Zapier: the Catch-Hook-compatible pause endpoint and the REST hook trigger's endpoints.

`/zapier/{flow}` takes what a Zapier Catch Hook takes — a JSON object, form fields, query string
parameters, merged with the body winning — so "Webhooks by Zapier" can call it with no code, and
answers with a Catch Hook's own success shape.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from ..config import ZAPIER_CALLBACK_LIFETIME
from ..errors import BadRequest, NotFound
from ..hooks import subscribe
from ..models import ResumeTarget, RunRequest
from .auth import require_api_key
from .bodies import int_param, loads_untrusted, read_json_object
from .keys import service_key, store_key

RESERVED = frozenset(
    {
        "callback_url",
        "title",
        "summary",
        "action",
        "context",
        "risk",
        "idempotency_key",
        "requested_by",
    }
)
_OBJECT_FIELDS = ("action", "context", "risk")
_TEXT_FIELDS = ("callback_url", "title", "summary", "idempotency_key", "requested_by")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_MAX_DECISIONS = 100


def _plain(values: MultiMapping[Any]) -> dict[str, Any]:
    """Form or query fields as a dict: a repeated key becomes a list; uploaded files are ignored."""
    fields: dict[str, Any] = {}
    for key in dict.fromkeys(values.keys()):
        texts = [v for v in values.getall(key) if isinstance(v, str)]
        if texts:
            fields[key] = texts[0] if len(texts) == 1 else texts
    return fields


async def read_fields(request: web.Request) -> dict[str, Any]:
    """The query string, then the body (JSON object or form), merged; the body wins."""
    fields = _plain(request.query)
    if request.content_type in _FORM_TYPES:
        fields.update(_plain(await request.post()))
        return fields
    raw = await request.read()
    if not raw.strip():
        return fields
    # Like a Catch Hook, read JSON whatever the content type claims (Zapier's "raw" payloads).
    data = loads_untrusted(
        raw,
        "request body",
        invalid="request body must be a JSON object or form fields"
        " (application/x-www-form-urlencoded)",
    )
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    fields.update(data)
    return fields


def _object(fields: dict[str, Any], name: str) -> dict[str, Any]:
    value = fields.get(name)
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        value = loads_untrusted(
            value, name, invalid=f"{name} must be a JSON object (or a string holding one)"
        )
    if not isinstance(value, dict):
        raise BadRequest(f"{name} must be a JSON object (or a string holding one)")
    return value


def _text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


def to_run_request(
    flow: str, fields: dict[str, Any], *, request_id: str, attempt: str
) -> RunRequest:
    """The run a Catch-Hook-style request asks for: unreserved fields join the action."""
    text = {name: _text(fields, name) for name in _TEXT_FIELDS}
    action = {key: value for key, value in fields.items() if key not in RESERVED}
    action.update(_object(fields, "action"))
    callback_url = text.pop("callback_url")
    return RunRequest(
        flow=flow,
        action=action,
        context=_object(fields, "context"),
        risk=_object(fields, "risk"),
        resume=ResumeTarget(url=callback_url) if callback_url else None,
        metadata={"zapier": {"request_id": request_id, "attempt": attempt}},
        **text,
    )


async def pause(request: web.Request) -> web.Response:
    """POST|PUT|GET /zapier/{flow}: pause a Zap; answers like a Catch Hook."""
    require_api_key(request)
    service = request.app[service_key]
    flow_name = request.match_info["flow"]
    flow = service.flow(flow_name)
    request_id, attempt = str(uuid.uuid4()), str(uuid.uuid4())
    fields = await read_fields(request)
    run_request = to_run_request(flow_name, fields, request_id=request_id, attempt=attempt)
    if run_request.resume is not None and flow.timeout > ZAPIER_CALLBACK_LIFETIME:
        raise BadRequest(
            f"flow {flow_name!r} waits up to {flow.timeout.days} days, but Zapier callback URLs"
            " stop working after 30 days: set the flow's timeout to 30d or less"
        )
    record, _ = await service.pause(run_request, source="zapier")
    return web.json_response(
        {"status": "success", "id": record.id, "request_id": request_id, "attempt": attempt}
    )


async def create_subscription(request: web.Request) -> web.Response:
    """POST /zapier/subscriptions {"target_url", "flow"?}: 201 {"id"} (REST hook subscribe)."""
    require_api_key(request)
    body = await read_json_object(request)
    target_url = body.get("target_url")
    if not isinstance(target_url, str) or not target_url.strip():
        raise BadRequest("target_url is required: the URL every decision will be POSTed to")
    if len(target_url) > 4096:
        raise BadRequest("target_url is too long")
    flow = body.get("flow")
    if flow is not None and not isinstance(flow, str):
        raise BadRequest("flow must be a string")
    subscription = await subscribe(request.app[service_key], target_url.strip(), flow or None)
    return web.json_response({"id": subscription.id}, status=201)


async def delete_subscription(request: web.Request) -> web.Response:
    """DELETE /zapier/subscriptions/{id}: 204 (REST hook unsubscribe); 404 when unknown."""
    require_api_key(request)
    if not await request.app[store_key].delete_subscription(request.match_info["sub_id"]):
        raise NotFound("subscription not found")
    return web.Response(status=204)


async def recent_decisions(request: web.Request) -> web.Response:
    """GET /zapier/decisions?flow=&limit=: recent decision payloads, newest first."""
    require_api_key(request)
    limit = int_param(request, "limit", 10, 1, _MAX_DECISIONS)
    runs = await request.app[store_key].recent_decisions(
        flow=request.query.get("flow") or None, limit=limit
    )
    return web.json_response([run.decision for run in runs if run.decision])
