"""POST /n8n/{flow}: the pause endpoint for n8n's HTTP Request node, paired with a Wait node.

The body uses n8n's spelling (`resumeUrl` from `{{ $execution.resumeUrl }}`, `idempotencyKey`,
`requestedBy`); snake_case is accepted too. Without an `action` key, everything that is not one
of the keys below is the action, so a builder can send the item's fields as they are.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from aiohttp import web

from ..errors import Conflict, ValidationFailed
from ..models import ResumeTarget, RunRequest
from .auth import require_api_key
from .bodies import json_model, read_json_object
from .keys import service_key

# Every accepted spelling → the RunRequest field it fills.
_KEYS: dict[str, str] = {
    "resumeUrl": "resume_url",
    "resume_url": "resume_url",
    "action": "action",
    "title": "title",
    "summary": "summary",
    "context": "context",
    "risk": "risk",
    "requestedBy": "requested_by",
    "requested_by": "requested_by",
    "idempotencyKey": "idempotency_key",
    "idempotency_key": "idempotency_key",
}
_OBJECTS = ("action", "context", "risk")


def _object(name: str, value: Any) -> dict[str, Any]:
    # n8n's "Using Fields Below" body sends every field as text; accept a JSON object in it.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value) if value.strip() else {}
    if not isinstance(value, dict):
        raise ValidationFailed(f"{name} must be a JSON object")
    return value


def _text(name: str, value: Any) -> str | None:
    # `{{ $execution.id }}` may arrive as a number when the body is built as JSON.
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValidationFailed(f"{name} must be a string")
    return str(value)


def n8n_request(flow: str, body: dict[str, Any]) -> RunRequest:
    """The n8n-style body as a RunRequest; 422 naming the key when something does not fit."""
    fields: dict[str, Any] = {}
    for key, value in body.items():
        name = _KEYS.get(key)
        if name is None:
            continue
        if name in fields:
            raise ValidationFailed(f"{key}: given twice (camelCase and snake_case)")
        fields[name] = value
    rest = {key: value for key, value in body.items() if key not in _KEYS}
    if "action" in fields:
        if rest:
            raise ValidationFailed(
                f"unknown key(s) beside action: {', '.join(sorted(rest))};"
                " put them inside action or context"
            )
        action = _object("action", fields["action"])
    else:
        action = rest
    if not action:
        raise ValidationFailed("action: send the proposed action as an object (or as the body)")
    resume_url = _text("resumeUrl", fields.get("resume_url"))
    request: dict[str, Any] = {
        "flow": flow,
        "action": action,
        "resume": ResumeTarget(url=resume_url) if resume_url else None,
        "idempotency_key": _text("idempotencyKey", fields.get("idempotency_key")),
        "requested_by": _text("requestedBy", fields.get("requested_by")),
        "title": _text("title", fields.get("title")),
        "summary": _text("summary", fields.get("summary")),
    }
    for name in ("context", "risk"):
        if fields.get(name) not in (None, ""):
            request[name] = _object(name, fields[name])
    return RunRequest.model_validate(request)


async def pause(request: web.Request) -> web.Response:
    """POST /n8n/{flow}: 201 with the run (200 when the same execution retries the call)."""
    require_api_key(request)
    service = request.app[service_key]
    flow_name = request.match_info["flow"]
    flow = service.flow(flow_name)
    run_request = n8n_request(flow_name, await read_json_object(request))
    if run_request.resume is None and not flow.resume_url:
        raise ValidationFailed(
            "resumeUrl: required; send {{ $execution.resumeUrl }} from the HTTP Request node"
        )
    record, created = await service.pause(run_request, source="n8n")
    # Execution ids restart with a new n8n database and repeat across n8n instances: the same
    # key with another resume URL is another execution, which must not be handed this run.
    resume = run_request.resume
    if not created and resume and record.resume and record.resume.get("url") != resume.url:
        raise Conflict(
            f"idempotencyKey {run_request.idempotency_key!r} was already used by another"
            " execution (different resumeUrl); use a key unique to this execution"
        )
    return json_model(
        await service.to_api(record), status=201 if created else 200, exclude={"events"}
    )
