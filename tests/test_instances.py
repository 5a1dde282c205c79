"""Several connector instances on one PostgreSQL database, in one test process."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp.test_utils import TestClient

from connector.app import create_app

from .conftest import AUTH, create_run, eventually, fetch_run, make_settings, review_links, run_body
from .fake_telegram import FakeTelegram, start_fake_telegram
from .telegram_helpers import ANN, PUBLIC_URL, buttons, telegram_flow


async def two_instances(connector: Any, tmp_path: Any, pg_url: str, **settings: Any) -> Any:
    """Instances A and B on one database, each with its own data dir (as on two machines)."""
    return (
        await connector(database_url=pg_url, data_dir=str(tmp_path / "a"), **settings),
        await connector(database_url=pg_url, data_dir=str(tmp_path / "b"), **settings),
    )


async def test_approve_on_the_page_calls_back_on_postgres(connector, receiver, pg_url):
    """On PostgreSQL, a reviewer's approval on the page resumes the workflow."""
    client = await connector(database_url=pg_url)
    run = await create_run(client, run_body(receiver))
    links = await review_links(client, run["id"])
    assert (await client.get(links["ann@example.com"])).status == 200
    response = await client.post(links["ann@example.com"], data={"choice": "approve"})
    assert response.status == 200
    (call,) = await receiver.wait_for(1)
    payload = json.loads(call.body)
    assert (payload["run_id"], payload["decision"]) == (run["id"], "approved")
    assert payload["reviewer"]["id"] == "ann@example.com"

    async def delivered() -> Any:
        found = await fetch_run(client, run["id"])
        return found["delivery"]["status"] == "delivered" and found

    stored = await eventually(delivered)
    assert stored["delivery"]["webhook_id"] == call.headers["webhook-id"]


async def test_wait_on_one_instance_ends_with_a_decision_on_the_other(
    connector, receiver, pg_url, tmp_path
):
    """A long poll on A returns at once when a reviewer decides through B's page."""
    a, b = await two_instances(connector, tmp_path, pg_url)
    run = await create_run(a, run_body(receiver))
    links = await review_links(a, run["id"])  # signed by A, with the key both share
    waiting = asyncio.create_task(a.get(f"/v1/runs/{run['id']}/wait?timeout=30", headers=AUTH))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    decided_at = time.monotonic()
    response = await b.post(links["bob@example.com"], data={"choice": "reject"})
    assert response.status == 200
    answer = await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - decided_at < 2
    assert (await answer.json())["status"] == "rejected"
    (call,) = await receiver.wait_for(1)
    assert json.loads(call.body)["reviewer"]["id"] == "bob@example.com"


async def test_wait_on_b_ends_with_an_api_decision_on_a(connector, receiver, pg_url, tmp_path):
    """The other way round, through the API: B's long poll ends when A records the decision."""
    a, b = await two_instances(connector, tmp_path, pg_url)
    run = await create_run(b, run_body(receiver))
    waiting = asyncio.create_task(b.get(f"/v1/runs/{run['id']}/wait?timeout=30", headers=AUTH))
    await asyncio.sleep(0.2)
    response = await a.post(
        f"/v1/runs/{run['id']}/decision",
        json={"decision": "approve", "reviewer": "ann@example.com"},
        headers=AUTH,
    )
    assert response.status == 200
    answer = await asyncio.wait_for(waiting, 5)
    assert (await answer.json())["status"] == "approved"


async def test_racing_clicks_on_two_instances_decide_once(connector, receiver, pg_url, tmp_path):
    """Ann on A and Bob on B press at the same moment: one decision, one delivery."""
    a, b = await two_instances(connector, tmp_path, pg_url)
    for _ in range(5):
        run = await create_run(a, run_body(receiver))
        links = await review_links(a, run["id"])
        answers = await asyncio.gather(
            a.post(links["ann@example.com"], data={"choice": "approve"}),
            b.post(links["bob@example.com"], data={"choice": "reject"}),
        )
        texts = [await r.text() for r in answers]
        assert sorted(r.status for r in answers) == [200, 409], texts
        stored = await fetch_run(b, run["id"])
        winner = "ann@example.com" if answers[0].status == 200 else "bob@example.com"
        assert stored["decision"]["reviewer"]["id"] == winner
    calls = await receiver.wait_for(5)
    await asyncio.sleep(0.3)  # a second delivery of any run would arrive by now
    assert len(receiver.received) == 5
    assert len({c.headers["webhook-id"] for c in calls}) == 5


async def test_jobs_recorded_on_one_instance_run_once(connector, receiver, pg_url, tmp_path):
    """Decisions recorded on both instances are each delivered exactly once."""
    a, b = await two_instances(connector, tmp_path, pg_url)
    runs = [await create_run(a if i % 2 else b, run_body(receiver)) for i in range(20)]
    await asyncio.gather(
        *(
            (b if i % 2 else a).post(
                f"/v1/runs/{run['id']}/decision",
                json={"decision": "approve", "reviewer": "ann@example.com"},
                headers=AUTH,
            )
            for i, run in enumerate(runs)
        )
    )
    await receiver.wait_for(20)
    await asyncio.sleep(0.3)
    ids = [json.loads(c.body)["run_id"] for c in receiver.received]
    assert sorted(ids) == sorted(r["id"] for r in runs)


async def test_telegram_polling_runs_on_one_instance_at_a_time(
    aiohttp_client, receiver, pg_url, tmp_path
):
    """Two instances in polling mode never poll together; when one stops, the other polls."""
    async with start_fake_telegram(FakeTelegram(chat_interval=0.05)) as fake:

        async def start(name: str) -> TestClient:
            settings = make_settings(
                tmp_path / name,
                database_url=pg_url,
                public_url=PUBLIC_URL,
                telegram={
                    "token": fake.token,
                    "api_url": fake.url,
                    "mode": "polling",
                    "poll_timeout": "1s",
                    "chat_rate": 20.0,
                },
                flows={"post": telegram_flow()},
            )
            return await aiohttp_client(create_app(settings))

        first = await start("a")
        second = await start("b")
        await eventually(lambda: asyncio.sleep(0, len(fake.calls_to("getUpdates")) >= 3))
        # Telegram answers 409 to a getUpdates that overlaps another one: there is none.
        assert [c for c in fake.calls_to("getUpdates") if c.status == 409] == []
        run = await create_run(first, run_body(receiver, flow="post"))

        async def ann_prompt() -> Any:
            sent = fake.sent(ANN["id"])
            return sent[0] if sent else None

        prompt = await eventually(ann_prompt)
        polls_before = len(fake.calls_to("getUpdates"))
        await first.close()  # the poller stops with it; the other instance takes the lock
        await fake.push(fake.press(ANN, prompt, buttons(prompt)["approve"]["callback_data"]))
        (call,) = await receiver.wait_for(1, timeout=15)
        assert json.loads(call.body)["run_id"] == run["id"]
        later = fake.calls_to("getUpdates")[polls_before:]
        assert later and [c for c in later if c.status == 409] == []
        assert (await fetch_run(second, run["id"]))["status"] == "approved"


async def test_both_instances_time_out_the_same_runs_once(connector, receiver, pg_url, tmp_path):
    """Both instances' deadline watchers see the same due runs; each run times out once."""
    flow = {"reviewers": [{"email": "ann@example.com"}], "timeout": "1s", "on_timeout": "reject"}
    a, b = await two_instances(connector, tmp_path, pg_url, flows={"news": flow})
    runs = await asyncio.gather(
        *(create_run(a if i % 2 else b, run_body(receiver)) for i in range(30))
    )
    calls = await receiver.wait_for(30, timeout=20)
    await asyncio.sleep(0.5)  # a second decision's delivery would arrive by now
    assert len(receiver.received) == 30
    assert sorted(json.loads(c.body)["run_id"] for c in calls) == sorted(r["id"] for r in runs)
    for run in runs:
        stored = await fetch_run(a, run["id"])
        assert stored["decision"]["decided_by"] == "timeout"
        assert [e["kind"] for e in stored["events"]].count("decided") == 1
