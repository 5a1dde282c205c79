"""Resume delivery: retries, failures, redelivery, timeouts, restarts."""

from __future__ import annotations

import asyncio
import json
import socket
import time

from aiohttp.test_utils import TestClient, TestServer

from connector.app import create_app
from connector.delivery import classify

from .conftest import AUTH, create_run, eventually, fetch_run, make_settings, run_body
from .receiver import start_receiver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def decide(client, run_id: str, decision: str = "approve") -> None:
    response = await client.post(
        f"/v1/runs/{run_id}/decision",
        json={"decision": decision, "reviewer": "ann@example.com"},
        headers=AUTH,
    )
    assert response.status == 200, await response.text()


async def delivery_of(client, run_id: str, status: str) -> dict:
    async def check():
        run = await fetch_run(client, run_id)
        return run if run["delivery"] and run["delivery"]["status"] == status else None

    return await eventually(check)


async def test_receiver_down_then_up_is_delivered(client):
    """A decision recorded while the receiver is down arrives once it comes up."""
    port = free_port()
    run = await create_run(client, run_body(resume={"url": f"http://127.0.0.1:{port}/hook"}))
    await decide(client, run["id"])

    async def failed_attempts():
        run_now = await fetch_run(client, run["id"])
        return run_now if run_now["delivery"]["attempts"] >= 2 else None

    pending = await eventually(failed_attempts)
    assert pending["delivery"]["status"] == "pending"
    assert "connection" in pending["delivery"]["last_error"]
    async with start_receiver(port) as receiver:
        (call,) = await receiver.wait_for(1)
        delivered = await delivery_of(client, run["id"], "delivered")
    assert json.loads(call.body)["run_id"] == run["id"]
    assert call.headers["webhook-id"] == delivered["delivery"]["webhook_id"]


async def test_retries_keep_the_same_webhook_id(client, receiver):
    """5xx and 429 are retried with the same webhook-id and the same body."""
    receiver.statuses = [(503, "busy"), (429, "slow down")]
    run = await create_run(client, run_body(receiver))
    await decide(client, run["id"])
    calls = await receiver.wait_for(3)
    assert len({c.headers["webhook-id"] for c in calls}) == 1
    assert len({c.body for c in calls}) == 1
    run_now = await delivery_of(client, run["id"], "delivered")
    assert run_now["delivery"]["attempts"] == 3


async def test_n8n_running_409_is_retried(client, receiver):
    """n8n's 409 'running' (Wait node not reached yet) is retried until it succeeds."""
    receiver.statuses = [(409, '{"message":"The execution \\"7\\" is running already."}')]
    run = await create_run(client, run_body(receiver))
    await decide(client, run["id"])
    await receiver.wait_for(2)
    await delivery_of(client, run["id"], "delivered")


async def test_404_fails_and_redeliver_works(client, receiver):
    """A 404 fails the delivery at once; redeliver sends it again with the same id."""
    receiver.statuses = [(404, "no such execution")]
    run = await create_run(client, run_body(receiver))
    await decide(client, run["id"])
    failed = await delivery_of(client, run["id"], "failed")
    assert failed["delivery"]["last_status"] == 404
    assert failed["delivery"]["attempts"] == 1
    response = await client.post(f"/v1/runs/{run['id']}/redeliver", headers=AUTH)
    assert response.status == 202
    delivered = await delivery_of(client, run["id"], "delivered")
    calls = receiver.received
    assert len(calls) == 2 and calls[0].body == calls[1].body
    assert calls[1].headers["webhook-id"] == delivered["delivery"]["webhook_id"]


async def test_redeliver_needs_a_decision(client, receiver):
    """Redelivering a pending run is a 409."""
    run = await create_run(client, run_body(receiver))
    response = await client.post(f"/v1/runs/{run['id']}/redeliver", headers=AUTH)
    assert response.status == 409


async def test_redirects_are_not_followed(client, receiver):
    """A 3xx answer is a failed delivery, never followed."""
    receiver.statuses = [(302, "elsewhere")]
    run = await create_run(client, run_body(receiver))
    await decide(client, run["id"])
    failed = await delivery_of(client, run["id"], "failed")
    assert failed["delivery"]["last_status"] == 302
    assert len(receiver.received) == 1


async def test_timeout_decides_by_policy(connector, receiver):
    """A run past its deadline is decided by on_timeout and delivered."""
    flow = {"reviewers": [{"email": "ann@example.com"}], "timeout": "1s", "on_timeout": "approve"}
    client = await connector(flows={"news": flow})
    run = await create_run(client, run_body(receiver))
    (call,) = await receiver.wait_for(1, timeout=15)
    payload = json.loads(call.body)
    assert payload["decision"] == "approved" and payload["decided_by"] == "timeout"
    assert payload["reviewer"] is None
    assert (await fetch_run(client, run["id"]))["status"] == "approved"


async def test_timeout_after_restart(tmp_path, receiver):
    """A deadline that passes while the connector is down is applied at start-up."""
    flow = {"reviewers": [{"email": "ann@example.com"}], "timeout": "1s", "on_timeout": "reject"}
    settings = make_settings(tmp_path, flows={"news": flow})
    async with TestClient(TestServer(create_app(settings))) as first:
        run = await create_run(first, run_body(receiver))
    record_deadline = time.time() + 1.1
    await asyncio.sleep(max(0.0, record_deadline - time.time()))
    assert receiver.received == []
    async with TestClient(TestServer(create_app(settings))) as second:
        (call,) = await receiver.wait_for(1)
        assert json.loads(call.body)["decided_by"] == "timeout"
        assert (await fetch_run(second, run["id"]))["status"] == "rejected"


async def test_decision_survives_restart_before_delivery(tmp_path):
    """A decision recorded while the receiver is down is delivered by the next process."""
    port = free_port()
    settings = make_settings(tmp_path)
    async with TestClient(TestServer(create_app(settings))) as first:
        run = await create_run(first, run_body(resume={"url": f"http://127.0.0.1:{port}/h"}))
        await decide(first, run["id"], "reject")
    async with (
        start_receiver(port) as receiver,
        TestClient(TestServer(create_app(settings))) as second,
    ):
        (call,) = await receiver.wait_for(1)
        assert json.loads(call.body)["decision"] == "rejected"
        await delivery_of(second, run["id"], "delivered")


def test_classify_answers():
    """2xx delivered; 429/5xx/n8n-running retried; other 4xx and redirects failed."""
    assert classify(200, "") == "done" and classify(204, "") == "done"
    assert classify(500, "") == "retry" and classify(429, "") == "retry"
    assert classify(409, "The execution is running already") == "retry"
    assert classify(409, "The execution has finished already") == "failed"
    assert classify(404, "") == "failed" and classify(401, "") == "failed"
    assert classify(301, "") == "failed"
