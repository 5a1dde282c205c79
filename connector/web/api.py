"""The JSON API for workflows and operators (/v1/…, /healthz)."""

from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest, EditNotAllowed
from ..models import DecisionRequest, RunPage, RunRequest
from ..policy import Actor
from .auth import is_operator_key, require_api_key
from .bodies import int_param, json_model, parse_body, read_json_object
from .keys import service_key, store_key

_MAX_PAGE = 200
_MAX_WAIT = 60.0


async def create_run(request: web.Request) -> web.Response:
    """POST /v1/runs: pause a workflow; 201 with the run (200 when the idempotency key repeats)."""
    require_api_key(request)
    run_request = await parse_body(request, RunRequest)
    service = request.app[service_key]
    record, created = await service.pause(run_request, source="api")
    return json_model(
        await service.to_api(record), status=201 if created else 200, exclude={"events"}
    )


async def list_runs(request: web.Request) -> web.Response:
    """GET /v1/runs?status=&flow=&limit=&cursor=: newest first, cursor pagination."""
    require_api_key(request)
    status = request.query.get("status")
    if status not in (None, "pending", "approved", "rejected", "cancelled"):
        raise BadRequest("status must be pending, approved, rejected or cancelled")
    limit = int_param(request, "limit", 50, 1, _MAX_PAGE)
    service = request.app[service_key]
    records = await request.app[store_key].list_runs(
        status=status,
        flow=request.query.get("flow"),
        limit=limit,
        before=request.query.get("cursor") or None,
    )
    runs = [await service.to_api(r) for r in records]
    page = RunPage(runs=runs, next_cursor=records[-1].id if len(records) == limit else None)
    return web.Response(
        body=page.model_dump_json(by_alias=True, exclude={"runs": {"__all__": {"events"}}}),
        content_type="application/json",
    )


async def get_run(request: web.Request) -> web.Response:
    """GET /v1/runs/{id}: the run with its audit trail."""
    require_api_key(request)
    service = request.app[service_key]
    record = await service.record(request.match_info["run_id"])
    return json_model(await service.to_api(record, with_events=True))


async def cancel_run(request: web.Request) -> web.Response:
    """POST /v1/runs/{id}/cancel: the resume target hears `cancelled`."""
    require_api_key(request)
    reason = None
    if request.can_read_body and (await request.read()).strip():
        reason = (await read_json_object(request)).get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("reason must be a string")
    service = request.app[service_key]
    record = await service.cancel(request.match_info["run_id"], reason=reason)
    return json_model(await service.to_api(record), exclude={"events"})


async def decide_run(request: web.Request) -> web.Response:
    """POST /v1/runs/{id}/decision: a program or operator decides."""
    key = require_api_key(request)
    body = await parse_body(request, DecisionRequest)
    service = request.app[service_key]
    run_id = request.match_info["run_id"]
    edits = body.action
    if edits is not None and body.decision != "approve":
        raise EditNotAllowed("an edited action only makes sense with approve")
    record = await service.decide(
        run_id,
        Actor(
            "operator" if is_operator_key(request, key) else "api",
            id=body.reviewer,
            channel="api",
        ),
        approve=body.decision == "approve",
        edits=edits,
        comment=body.comment,
        decided_by="api",
    )
    return json_model(await service.to_api(record), exclude={"events"})


async def wait_run(request: web.Request) -> web.Response:
    """GET /v1/runs/{id}/wait?timeout=30: long poll until decided (at most 60 s)."""
    require_api_key(request)
    raw = request.query.get("timeout", "30")
    try:
        timeout = float(raw)
    except ValueError as exc:
        raise BadRequest("timeout must be a number of seconds") from exc
    if not 0 <= timeout <= _MAX_WAIT:
        raise BadRequest(f"timeout must be between 0 and {_MAX_WAIT:.0f} seconds")
    service = request.app[service_key]
    record = await service.wait(request.match_info["run_id"], timeout)
    return json_model(await service.to_api(record), exclude={"events"})


async def redeliver_run(request: web.Request) -> web.Response:
    """POST /v1/runs/{id}/redeliver: send the recorded decision again."""
    require_api_key(request)
    service = request.app[service_key]
    record = await service.redeliver(request.match_info["run_id"])
    return json_model(await service.to_api(record), status=202, exclude={"events"})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 when the database answers."""
    await request.app[store_key].ping()
    return web.json_response({"ok": True})
