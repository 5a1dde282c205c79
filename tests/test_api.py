"""The JSON API: creating, listing, waiting, errors that change nothing."""

from __future__ import annotations

import asyncio
import io
import json

from connector.web.keys import service_key, store_key

from .conftest import AUTH, create_run, eventually, fetch_run, run_body


async def count_runs(client) -> int:
    return len(
        await client.app[store_key].list_runs(status=None, flow=None, limit=1000, before=None)
    )


async def test_create_returns_the_run(client):
    """POST /v1/runs answers 201 with the stored run and its deadline."""
    run = await create_run(client, run_body())
    assert run["status"] == "pending" and run["flow"] == "news"
    assert run["title"] == "Send the November newsletter"
    assert run["editable"] == ["subject", "body"]
    assert run["decision"] is None and run["delivery"] is None
    assert run["deadline"] > run["created_at"]


async def test_idempotency_key_returns_same_run(client):
    """The same idempotency key and flow give back the same run with 200."""
    first = await create_run(client, run_body(idempotency_key="exec-42"))
    again = await create_run(client, run_body(idempotency_key="exec-42"), status=200)
    assert again["id"] == first["id"]
    other = await create_run(client, run_body(idempotency_key="exec-43"))
    assert other["id"] != first["id"]
    assert await count_runs(client) == 2


async def test_auth_is_required(client):
    """No key or a wrong key is a 401 in the standard error shape; X-API-Key works too."""
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}):
        response = await client.post("/v1/runs", json=run_body(), headers=headers)
        assert response.status == 401
        assert await response.json() == {
            "ok": False,
            "error": "missing or wrong API key",
            "status": 401,
        }
    ok = await client.post("/v1/runs", json=run_body(), headers={"X-API-Key": "test-key"})
    assert ok.status == 201
    assert await count_runs(client) == 1


async def test_bad_bodies_write_nothing(client):
    """Malformed, wrong-shaped and incomplete bodies get 4xx with a clear error and no run."""
    cases = [
        (b"{not json", 400),
        (b"", 400),
        (b"[1, 2]", 400),
        (json.dumps({"flow": "news"}).encode(), 422),
        (json.dumps({"flow": "news", "action": "send"}).encode(), 422),
        (json.dumps({**run_body(), "surprise": 1}).encode(), 422),
        (json.dumps({**run_body(), "flow": "nope"}).encode(), 404),
        (json.dumps({**run_body(), "resume": {"url": "ftp://example.com/x"}}).encode(), 400),
    ]
    for raw, status in cases:
        response = await client.post(
            "/v1/runs", data=raw, headers={**AUTH, "Content-Type": "application/json"}
        )
        body = await response.json()
        assert response.status == status, (raw, body)
        assert body["ok"] is False and body["status"] == status and body["error"]
    assert await count_runs(client) == 0


async def test_validation_errors_name_the_field(client):
    """A 422 says which field is wrong."""
    response = await client.post("/v1/runs", json={"flow": "news"}, headers=AUTH)
    body = await response.json()
    assert response.status == 422
    assert "action" in body["error"]
    assert body["errors"][0]["loc"] == ["action"]


async def test_oversized_body_is_413(client):
    """A body over the limit is refused with 413 and writes nothing."""
    big = json.dumps(run_body(action={"body": "x" * (1024 * 1024 + 10)})).encode()
    response = await client.post(
        "/v1/runs", data=io.BytesIO(big), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status == 413
    assert (await response.json())["status"] == 413
    assert await count_runs(client) == 0


async def test_private_resume_urls_are_refused(connector):
    """Loopback, private, link-local and metadata addresses are refused unless allowed."""
    client = await connector(resume_allow=[])
    for url in (
        "http://127.0.0.1:9/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://192.168.0.5/x",
        "http://localhost/x",
        "http://user:pw@example.com/x",
    ):
        response = await client.post("/v1/runs", json=run_body(resume={"url": url}), headers=AUTH)
        body = await response.json()
        assert response.status == 400, url
        assert "resume" in body["error"].lower()
    assert await count_runs(client) == 0


async def test_list_runs_newest_first_with_cursor(client):
    """GET /v1/runs pages newest first and filters by status and flow."""
    ids = [(await create_run(client, run_body()))["id"] for _ in range(5)]
    seen = []
    cursor = None
    while True:
        query = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await (await client.get("/v1/runs", params=query, headers=AUTH)).json()
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))
    await client.post(f"/v1/runs/{ids[0]}/cancel", headers=AUTH)
    cancelled = await (await client.get("/v1/runs?status=cancelled", headers=AUTH)).json()
    assert [r["id"] for r in cancelled["runs"]] == [ids[0]]
    bad = await client.get("/v1/runs?limit=zero", headers=AUTH)
    assert bad.status == 400


async def test_get_unknown_run_is_404(client):
    """An unknown run id is a 404 in the error shape."""
    response = await client.get("/v1/runs/01NOPE", headers=AUTH)
    assert response.status == 404
    assert (await response.json())["ok"] is False


async def test_wait_returns_when_decided(client):
    """A long poll returns as soon as another request decides the run."""
    run = await create_run(client, run_body())
    waiter = asyncio.create_task(client.get(f"/v1/runs/{run['id']}/wait?timeout=30", headers=AUTH))

    async def waiting():
        return client.app[service_key].waiting(run["id"])

    await eventually(waiting)  # the long poll is open on the server, still pending
    assert not waiter.done()
    await client.post(
        f"/v1/runs/{run['id']}/decision",
        json={"decision": "reject", "reviewer": "ann@example.com"},
        headers=AUTH,
    )
    response = await asyncio.wait_for(waiter, 5)
    assert (await response.json())["status"] == "rejected"


async def test_wait_times_out_with_pending_run(client):
    """A long poll with a short timeout returns the still-pending run."""
    run = await create_run(client, run_body())
    response = await client.get(f"/v1/runs/{run['id']}/wait?timeout=0.2", headers=AUTH)
    assert (await response.json())["status"] == "pending"
    too_long = await client.get(f"/v1/runs/{run['id']}/wait?timeout=61", headers=AUTH)
    assert too_long.status == 400


async def test_decision_api_refuses_locked_edits(client):
    """An API decision that edits a non-editable field is refused and records nothing."""
    run = await create_run(client, run_body())
    response = await client.post(
        f"/v1/runs/{run['id']}/decision",
        json={"decision": "approve", "reviewer": "ann@example.com", "action": {"list": "all"}},
        headers=AUTH,
    )
    assert response.status == 422
    assert (await fetch_run(client, run["id"]))["status"] == "pending"


async def test_openapi_describes_the_api(client):
    """The OpenAPI document lists the run endpoints and the request schema."""
    spec = await (await client.get("/v1/openapi.json")).json()
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/runs", "/v1/runs/{run_id}/decision", "/v1/runs/{run_id}/wait"} <= set(
        spec["paths"]
    )
    assert "action" in spec["components"]["schemas"]["RunRequest"]["properties"]


async def test_healthz_and_unknown_routes(client):
    """Health answers ok; unknown paths and methods answer in the error shape."""
    assert (await (await client.get("/healthz")).json()) == {"ok": True}
    missing = await client.get("/v1/nothing")
    assert missing.status == 404 and (await missing.json())["ok"] is False
    wrong = await client.delete("/v1/runs")
    assert wrong.status == 405 and (await wrong.json())["status"] == 405


async def test_metrics_count_runs_decisions_and_backlog(client, receiver):
    """/metrics shows runs created, decisions, job outcomes and the pending backlog."""
    first = await create_run(client, run_body(receiver))
    await create_run(client, run_body())
    await client.post(
        f"/v1/runs/{first['id']}/decision",
        headers=AUTH,
        json={"decision": "approve", "reviewer": "ann@example.com"},
    )
    await receiver.wait_for(1)
    assert (await client.get("/metrics")).status == 401

    async def scraped():
        text = await (await client.get("/metrics", headers=AUTH)).text()
        return text if 'hitl_job_attempts_total{kind="resume",result="done"} 1' in text else None

    text = await eventually(scraped)
    assert 'hitl_runs_created_total{flow="news",source="api"} 2' in text
    assert 'hitl_decisions_total{decided_by="api",decision="approved",flow="news"} 1' in text
    assert "hitl_runs_pending 1" in text
    assert "hitl_long_polls_waiting 0" in text


async def test_unpaired_surrogate_is_refused(client):
    """A JSON string escaping half a UTF-16 pair is a 400, never a 500; whole pairs are fine."""
    headers = {**AUTH, "Content-Type": "application/json"}
    body = b'{"flow": "news", "action": {"subject": "\\ud800 alone"}}'
    response = await client.post("/v1/runs", data=body, headers=headers)
    assert response.status == 400
    assert "surrogate" in (await response.json())["error"]
    paired = b'{"flow": "news", "action": {"subject": "\\ud83d\\ude00"}}'
    response = await client.post("/v1/runs", data=paired, headers=headers)
    assert response.status == 201
    assert (await response.json())["action"]["subject"] == "\U0001f600"
