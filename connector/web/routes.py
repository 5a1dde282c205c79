"""The one named route table."""

from __future__ import annotations

from aiohttp import web

from . import api, mailbox, n8n, openapi, review


def add_routes(app: web.Application, *, dev_mailbox: bool) -> None:
    """Register every route of the connector."""
    app.router.add_post("/v1/runs", api.create_run, name="create_run")
    app.router.add_get("/v1/runs", api.list_runs, name="list_runs")
    app.router.add_get("/v1/runs/{run_id}", api.get_run, name="get_run")
    app.router.add_post("/v1/runs/{run_id}/cancel", api.cancel_run, name="cancel_run")
    app.router.add_post("/v1/runs/{run_id}/decision", api.decide_run, name="decide_run")
    app.router.add_get("/v1/runs/{run_id}/wait", api.wait_run, name="wait_run")
    app.router.add_post("/v1/runs/{run_id}/redeliver", api.redeliver_run, name="redeliver_run")
    app.router.add_post("/n8n/{flow}", n8n.pause, name="n8n_pause")
    app.router.add_get("/v1/openapi.json", openapi.openapi_json, name="openapi")
    app.router.add_get("/healthz", api.healthz, name="healthz")
    app.router.add_get("/r/{token}", review.show, name="review")
    app.router.add_post("/r/{token}", review.submit, name="review_submit")
    if dev_mailbox:
        app.router.add_get("/dev/mailbox", mailbox.mailbox, name="dev_mailbox")
