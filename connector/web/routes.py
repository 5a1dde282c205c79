"""The one named route table."""

from __future__ import annotations

from aiohttp import web

from . import api, flows, inbox, mailbox, metrics, n8n, openapi, review, telegram, zapier


def add_routes(app: web.Application, *, dev_mailbox: bool, telegram_webhook: bool = False) -> None:
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
    app.router.add_get("/v1/flows", flows.list_flows, name="list_flows")
    app.router.add_get("/v1/flows/{flow}/stats", flows.get_flow_stats, name="flow_stats")
    app.router.add_get("/flows", flows.flows_page, name="flows_page")
    app.router.add_post("/flows/login", flows.login, name="flows_login")
    app.router.add_post("/flows/logout", flows.logout, name="flows_logout")
    app.router.add_get("/healthz", api.healthz, name="healthz")
    app.router.add_get("/metrics", metrics.metrics, name="metrics")
    app.router.add_get("/r/{token}", review.show, name="review")
    app.router.add_post("/r/{token}", review.submit, name="review_submit")
    # The fixed /zapier/… paths come before /zapier/{flow} so they win.
    app.router.add_post(
        "/zapier/subscriptions", zapier.create_subscription, name="zapier_subscribe"
    )
    app.router.add_delete(
        "/zapier/subscriptions/{sub_id}", zapier.delete_subscription, name="zapier_unsubscribe"
    )
    app.router.add_get("/zapier/decisions", zapier.recent_decisions, name="zapier_decisions")
    zapier_pause = app.router.add_resource("/zapier/{flow}", name="zapier_pause")
    for method in ("POST", "PUT", "GET"):
        zapier_pause.add_route(method, zapier.pause)
    if dev_mailbox:
        app.router.add_get("/dev/mailbox", mailbox.mailbox, name="dev_mailbox")
        app.router.add_post("/dev/inbox", inbox.receive, name="dev_inbox_receive")
        app.router.add_get("/dev/inbox", inbox.show, name="dev_inbox")
    if telegram_webhook:
        app.router.add_post("/telegram/webhook", telegram.webhook, name="telegram_webhook")
