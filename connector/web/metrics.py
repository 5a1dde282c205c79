"""GET /metrics: Prometheus text format (protected by the API key)."""

from __future__ import annotations

import time

from aiohttp import web

from .auth import require_api_key
from .keys import metrics_key, service_key, store_key


async def metrics(request: web.Request) -> web.Response:
    """Counters since start plus backlog gauges read from the store."""
    require_api_key(request)
    pending, jobs, oldest = await request.app[store_key].backlog()
    lag = max(0.0, time.time() - oldest) if oldest is not None else 0.0
    text = request.app[metrics_key].render(
        {
            "hitl_runs_pending": ("Runs waiting for a decision", {(): pending}),
            "hitl_jobs_pending": (
                "Deliveries and notifications waiting to run, by kind",
                {(("kind", kind),): count for kind, count in jobs.items()},
            ),
            "hitl_jobs_oldest_due_seconds": ("How long the oldest due job has waited", {(): lag}),
            "hitl_long_polls_waiting": (
                "Open GET /v1/runs/{id}/wait requests in this process",
                {(): request.app[service_key].waiting()},
            ),
        }
    )
    return web.Response(text=text, content_type="text/plain", charset="utf-8")
