"""OpenAPI 3.1 of the JSON API, generated from the pydantic models."""

from __future__ import annotations

from functools import cache
from typing import Any

from aiohttp import web
from pydantic.json_schema import models_json_schema

from .. import __version__
from ..models import DecisionRequest, ErrorBody, Run, RunPage, RunRequest

_REF = "#/components/schemas/{model}"


def _json(schema: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=schema)}}}


def _responses(ok: int, schema: str, *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {str(ok): {"description": "OK", "content": _json(schema)}}
    for status in (401, *errors):
        out[str(status)] = {"description": "Error", "content": _json("ErrorBody")}
    return out


_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}


_RUN_LINKS = {
    name: {"operationId": operation, "parameters": {"run_id": "$response.body#/id"}}
    for name, operation in (
        ("GetRun", "getRun"),
        ("CancelRun", "cancelRun"),
        ("DecideRun", "decideRun"),
        ("WaitRun", "waitRun"),
        ("RedeliverRun", "redeliverRun"),
    )
}


@cache
def build_spec() -> dict[str, Any]:
    """The whole document (built once)."""
    _, defs = models_json_schema(
        [(m, "validation") for m in (RunRequest, DecisionRequest)]
        + [(m, "serialization") for m in (Run, RunPage, ErrorBody)],
        ref_template=_REF,
    )
    run_path = {"parameters": [_RUN_ID]}
    created = _responses(201, "Run", 400, 404, 413, 422)
    created["201"]["links"] = _RUN_LINKS
    return {
        "openapi": "3.1.0",
        "info": {"title": "hitl-connector", "version": __version__},
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            "/v1/runs": {
                "post": {
                    "operationId": "createRun",
                    "requestBody": {"required": True, "content": _json("RunRequest")},
                    "responses": {
                        **created,
                        "200": {"description": "Same idempotency key", "content": _json("Run")},
                    },
                },
                "get": {
                    "operationId": "listRuns",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {
                                "type": "string",
                                "enum": ["pending", "approved", "rejected", "cancelled"],
                            },
                        },
                        {"name": "flow", "in": "query", "schema": {"type": "string"}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                        },
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": _responses(200, "RunPage", 400),
                },
            },
            "/v1/runs/{run_id}": {
                **run_path,
                "get": {"operationId": "getRun", "responses": _responses(200, "Run", 404)},
            },
            "/v1/runs/{run_id}/cancel": {
                **run_path,
                "post": {
                    "operationId": "cancelRun",
                    "responses": _responses(200, "Run", 400, 404, 409),
                },
            },
            "/v1/runs/{run_id}/decision": {
                **run_path,
                "post": {
                    "operationId": "decideRun",
                    "requestBody": {"required": True, "content": _json("DecisionRequest")},
                    "responses": _responses(200, "Run", 400, 403, 404, 409, 422),
                },
            },
            "/v1/runs/{run_id}/wait": {
                **run_path,
                "get": {
                    "operationId": "waitRun",
                    "parameters": [
                        {
                            "name": "timeout",
                            "in": "query",
                            "schema": {"type": "number", "minimum": 0, "maximum": 60},
                        }
                    ],
                    "responses": _responses(200, "Run", 400, 404),
                },
            },
            "/v1/runs/{run_id}/redeliver": {
                **run_path,
                "post": {
                    "operationId": "redeliverRun",
                    "responses": _responses(202, "Run", 404, 409),
                },
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    """GET /v1/openapi.json."""
    return web.json_response(build_spec())
