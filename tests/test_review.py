"""The review page: links from the mailbox, explicit buttons, first decision wins."""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import Webhook

from connector.app import create_app
from connector.web.keys import service_key, store_key

from .conftest import (
    AUTH,
    create_run,
    eventually,
    fetch_run,
    make_settings,
    review_links,
    run_body,
)

WEBHOOK_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def test_approve_with_edit_delivers_exact_payload(connector, receiver):
    """Approving with an edit sends the edited action, the changes and a valid signature."""
    client = await connector(webhook_secret=WEBHOOK_SECRET)
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    page = await client.get(links["ann@example.com"])
    assert page.status == 200
    html = await page.text()
    assert "Send the November newsletter" in html and 'name="field.subject"' in html
    response = await client.post(
        links["ann@example.com"],
        data={
            "choice": "approve",
            "field.subject": "December news",
            "field.body": "Hello all",
            "comment": "ok, new month",
        },
    )
    assert response.status == 200
    assert "approved" in await response.text()

    (call,) = await receiver.wait_for(1)
    assert call.path_qs == "/resume/abc?signature=x%2Fy"  # the URL is used byte-exact
    payload = json.loads(call.body)
    assert payload["run_id"] == run["id"]
    assert payload["decision"] == "approved" and payload["approved"] is True
    assert payload["action"] == {
        "subject": "December news",
        "body": "Hello all",
        "list": "customers",
    }
    assert payload["edited"] is True
    assert payload["changes"] == {"subject": {"from": "November news", "to": "December news"}}
    assert payload["comment"] == "ok, new month"
    assert payload["reviewer"] == {"id": "ann@example.com", "name": "Ann", "channel": "email"}
    assert payload["decided_by"] == "reviewer"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", payload["decided_at"])
    headers = {k.lower(): v for k, v in call.headers.items()}
    assert headers["content-type"] == "application/json"
    Webhook(WEBHOOK_SECRET).verify(call.body, headers)  # raises if the signature is wrong

    stored = await eventually_delivered(client, run["id"])
    assert stored["decision"] == payload
    assert stored["delivery"]["webhook_id"] == headers["webhook-id"]
    kinds = [e["kind"] for e in stored["events"]]
    assert kinds[:1] == ["created"] and "notified" in kinds and "viewed" in kinds
    assert "decided" in kinds and "delivery" in kinds


async def eventually_delivered(client, run_id):
    """Wait until the run's resume delivery is reported delivered."""

    async def delivered():
        run = await fetch_run(client, run_id)
        return run if run["delivery"] and run["delivery"]["status"] == "delivered" else None

    return await eventually(delivered)


async def test_reject_delivers_rejection(client, receiver):
    """Rejecting sends approved=false and the untouched action."""
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    response = await client.post(links["bob@example.com"], data={"choice": "reject"})
    assert response.status == 200
    (call,) = await receiver.wait_for(1)
    payload = json.loads(call.body)
    assert payload["decision"] == "rejected" and payload["approved"] is False
    assert payload["action"] == run["action"] and payload["edited"] is False
    assert payload["reviewer"]["name"] == "Bob"


async def test_second_click_sees_first_decision(client, receiver):
    """A second decision answers 409 and names who decided; the run keeps the first."""
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    first = await client.post(links["ann@example.com"], data={"choice": "approve"})
    assert first.status == 200
    second = await client.post(links["bob@example.com"], data={"choice": "reject"})
    assert second.status == 409
    text = await second.text()
    assert "already decided" in text and "Ann" in text
    later_view = await client.get(links["bob@example.com"])
    assert "approved" in await later_view.text() and "Ann" in await later_view.text()
    assert (await fetch_run(client, run["id"]))["status"] == "approved"
    await eventually_delivered(client, run["id"])
    assert len(receiver.received) == 1
    assert len(await client.app[store_key].jobs_for_run(run["id"], "resume")) == 1


async def test_get_and_head_never_decide(client, receiver):
    """Fetching every link (as a mail scanner does), with any query, leaves the run pending."""
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    for path in links.values():
        for suffix in ("", "?choice=approve", "?choice=reject", "?choice=approve&confirm=1"):
            for method in ("GET", "HEAD"):
                response = await client.request(method, path + suffix)
                assert response.status == 200
    stored = await fetch_run(client, run["id"])
    assert stored["status"] == "pending" and stored["decision"] is None
    assert receiver.received == []


async def test_preselected_choice_shows_one_confirm_button(client):
    """?choice=approve shows a single confirming button and no reject button."""
    run = await create_run(client, run_body())
    links = await review_links(client, run["id"])
    html = await (await client.get(links["ann@example.com"] + "?choice=approve")).text()
    assert 'value="approve"' in html and "Confirm approval" in html
    assert 'value="reject"' not in html


async def test_form_without_choice_does_nothing(client, receiver):
    """A form posted without a pressed button re-renders the page and records nothing."""
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    response = await client.post(
        links["ann@example.com"], data={"field.subject": "changed", "comment": "scanner"}
    )
    assert response.status == 200
    assert "Nothing was recorded" in await response.text()
    bogus = await client.post(links["ann@example.com"], data={"choice": "maybe"})
    assert bogus.status == 200
    stored = await fetch_run(client, run["id"])
    assert stored["status"] == "pending" and stored["action"]["subject"] == "November news"


async def test_editing_a_locked_field_is_refused(client, receiver):
    """A crafted post that edits a non-editable field is refused and records nothing."""
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    response = await client.post(
        links["ann@example.com"], data={"choice": "approve", "field.list": "everyone"}
    )
    assert response.status == 422
    assert "may not be edited" in await response.text()
    assert (await fetch_run(client, run["id"]))["status"] == "pending"


async def test_tampered_link_reveals_nothing(client):
    """A token with a changed character is a 404 page that does not mention the run."""
    run = await create_run(client, run_body())
    links = await review_links(client, run["id"])
    path = links["ann@example.com"]
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    for response in (
        await client.get(tampered),
        await client.post(tampered, data={"choice": "approve"}),
    ):
        assert response.status == 404
        text = await response.text()
        assert "newsletter" not in text and run["id"] not in text
    assert (await fetch_run(client, run["id"]))["status"] == "pending"


async def test_expired_link_is_gone(connector, receiver, tmp_path):
    """A link past the run's deadline answers 410 and cannot decide."""
    client = await connector(
        flows={"news": {"reviewers": [{"email": "ann@example.com"}], "timeout": "1h"}}
    )
    run = await create_run(client, run_body(receiver))
    service = client.app[service_key]
    record = await service.record(run["id"])
    token = service.signer.sign(record.id, "ann@example.com", record.created_at - 1)
    for response in (
        await client.get(f"/r/{token}"),
        await client.post(f"/r/{token}", data={"choice": "approve"}),
    ):
        assert response.status == 410
    assert (await fetch_run(client, run["id"]))["status"] == "pending"


async def test_key_rotation_keeps_old_links_valid(connector, tmp_path, receiver):
    """Links signed with the old key still work after a new key is appended."""
    old = await connector(secret_keys=["old-key-0123456789"])
    run = await create_run(old, run_body(receiver))
    path = (await review_links(old, run["id"]))["ann@example.com"]
    await old.close()
    rotated = make_settings(tmp_path, secret_keys=["old-key-0123456789", "new-key-9876543210"])
    async with TestClient(TestServer(create_app(rotated))) as new:
        assert (await new.get(path)).status == 200
        response = await new.post(path, data={"choice": "approve"})
        assert response.status == 200
        await receiver.wait_for(1)
    dropped = make_settings(tmp_path, secret_keys=["new-key-9876543210"])
    async with TestClient(TestServer(create_app(dropped))) as newest:
        assert (await newest.get(path)).status == 404


async def test_fifty_concurrent_decisions_make_one(client, receiver):
    """Fifty simultaneous button presses on one run: one decision, one callback."""
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    paths = list(links.values())
    responses = await asyncio.gather(
        *[
            client.post(paths[i % 2], data={"choice": "approve" if i % 3 else "reject"})
            for i in range(50)
        ]
    )
    statuses = sorted(r.status for r in responses)
    assert statuses.count(200) == 1 and statuses.count(409) == 49
    await eventually_delivered(client, run["id"])
    assert len(receiver.received) == 1
    assert len(await client.app[store_key].jobs_for_run(run["id"], "resume")) == 1
    events = (await fetch_run(client, run["id"]))["events"]
    assert [e["kind"] for e in events].count("decided") == 1


async def test_api_decision_and_cancel(client, receiver):
    """Programs decide through the API; cancelling delivers 'cancelled'."""
    run = await create_run(client, run_body(receiver))
    response = await client.post(
        f"/v1/runs/{run['id']}/decision",
        json={
            "decision": "approve",
            "reviewer": "bob@example.com",
            "action": {"subject": "Edited"},
        },
        headers=AUTH,
    )
    data = await response.json()
    assert response.status == 200, data
    assert data["decision"]["decided_by"] == "api"
    assert data["decision"]["changes"]["subject"]["to"] == "Edited"
    again = await client.post(f"/v1/runs/{run['id']}/cancel", headers=AUTH)
    assert again.status == 409
    assert (await again.json())["ok"] is False

    other = await create_run(client, run_body(receiver))
    cancelled = await client.post(
        f"/v1/runs/{other['id']}/cancel", json={"reason": "obsolete"}, headers=AUTH
    )
    assert (await cancelled.json())["status"] == "cancelled"
    calls = await receiver.wait_for(2)
    payloads = {json.loads(c.body)["run_id"]: json.loads(c.body) for c in calls}
    assert payloads[other["id"]]["decision"] == "cancelled"
    assert payloads[other["id"]]["approved"] is False


async def test_dev_inbox_shows_the_decision(connector):
    """A run resumed to /dev/inbox shows its decision payload on the dev inbox page."""
    client = await connector()
    target = f"http://127.0.0.1:{client.server.port}/dev/inbox"
    run = await create_run(client, run_body(resume={"url": target}))
    links = await review_links(client, run["id"])
    await client.post(links["ann@example.com"], data={"choice": "approve"})

    async def arrived():
        page = await (await client.get("/dev/inbox")).text()
        return page if run["id"] in page else None

    page = await eventually(arrived)
    assert "&#34;approved&#34;: true" in page or "&quot;approved&quot;: true" in page
