"""The one named route table."""

from __future__ import annotations

from aiohttp import web

from . import api, mailbox, openapi, review, telegram


def add_routes(app: web.Application, *, dev_mailbox: bool, telegram_webhook: bool = False) -> None:
    """Register every route of the connector."""
    app.router.add_post("/v1/runs", api.create_run, name="create_run")
    app.router.add_get("/v1/runs", api.list_runs, name="list_runs")
    app.router.add_get("/v1/runs/{run_id}", api.get_run, name="get_run")
    app.router.add_post("/v1/runs/{run_id}/cancel", api.cancel_run, name="cancel_run")
    app.router.add_post("/v1/runs/{run_id}/decision", api.decide_run, name="decide_run")
    app.router.add_get("/v1/runs/{run_id}/wait", api.wait_run, name="wait_run")
    app.router.add_post("/v1/runs/{run_id}/redeliver", api.redeliver_run, name="redeliver_run")
    app.router.add_get("/v1/openapi.json", openapi.openapi_json, name="openapi")
    app.router.add_get("/healthz", api.healthz, name="healthz")
    app.router.add_get("/r/{token}", review.show, name="review")
    app.router.add_post("/r/{token}", review.submit, name="review_submit")
    if dev_mailbox:
        app.router.add_get("/dev/mailbox", mailbox.mailbox, name="dev_mailbox")
    if telegram_webhook:
        app.router.add_post("/telegram/webhook", telegram.webhook, name="telegram_webhook")
