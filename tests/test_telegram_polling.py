"""Polling mode: getUpdates long polling with offsets, replays dropped, outages survived."""

from __future__ import annotations

import json
import logging

import pytest

from .conftest import create_run, eventually, run_body
from .fake_telegram import FakeTelegram, start_fake_telegram
from .telegram_helpers import ANN, buttons, start


@pytest.fixture
async def fake():
    """A fake Telegram Bot API on a random port."""
    async with start_fake_telegram(FakeTelegram(chat_interval=0.05)) as api:
        yield api


async def polling(connector, fake):
    return await start(connector, fake, mode="polling", webhook_secret="", poll_timeout="5s")


async def ann_prompt(fake):
    async def found():
        sent = fake.sent(ANN["id"])
        return sent[0] if sent else None

    return await eventually(found)


async def test_press_decides_in_polling_mode(fake, connector, receiver):
    """Without a public URL, a button press arrives by getUpdates and decides the run."""
    client = await polling(connector, fake)
    assert (await client.post("/telegram/webhook", json={})).status == 404
    await create_run(client, run_body(receiver, flow="post"))
    ann = await ann_prompt(fake)
    update = await fake.push(fake.press(ANN, ann, buttons(ann)["approve"]["callback_data"]))
    (call,) = await receiver.wait_for(1)
    assert json.loads(call.body)["reviewer"]["channel"] == "telegram"

    async def confirmed():
        # The next poll confirms the update: its offset is the update's id + 1.
        return [c for c in fake.calls_to("getUpdates") if c.params.get("offset")]

    poll = (await eventually(confirmed))[0]
    assert poll.params["offset"] == update["update_id"] + 1
    assert poll.params["allowed_updates"] == ["callback_query", "message"]
    assert poll.params["timeout"] == 5
    assert not fake._updates  # Telegram forgot it: confirmed exactly once


async def test_redelivered_update_is_dropped(fake, connector, receiver):
    """An update Telegram sends again (same update_id) is processed once."""
    client = await polling(connector, fake)
    await create_run(client, run_body(receiver, flow="post"))
    ann = await ann_prompt(fake)
    update = await fake.push(fake.press(ANN, ann, buttons(ann)["reject"]["callback_data"]))
    await receiver.wait_for(1)
    await fake.push(update)  # e.g. after a crash before the offset was confirmed

    async def confirmed_again():
        polls = [c for c in fake.calls_to("getUpdates") if c.params.get("offset")]
        return len(polls) >= 2 and not fake._updates

    await eventually(confirmed_again)
    assert len(fake.calls_to("answerCallbackQuery")) == 1
    assert len(receiver.received) == 1


async def test_poller_survives_errors_and_an_outage(connector, receiver, caplog):
    """5xx answers and a stopped API server only delay updates; polling resumes by itself."""
    caplog.set_level(logging.INFO)
    fake = FakeTelegram(chat_interval=0.05)
    fake.fail("getUpdates", 502, "Bad Gateway", times=2)
    async with start_fake_telegram(fake) as api:
        client = await polling(connector, api)
        await create_run(client, run_body(receiver, flow="post"))
        ann = await ann_prompt(api)
        port = int(api.url.rsplit(":", 1)[1])
    # The API is down now: the poller backs off and keeps trying.
    await eventually(lambda: _logged(caplog, "getUpdates failed (getUpdates: ClientConnectorError"))
    async with start_fake_telegram(fake, port=port) as api:
        await api.push(api.press(ANN, ann, buttons(ann)["approve"]["callback_data"]))
        (call,) = await receiver.wait_for(1, timeout=20)
        assert json.loads(call.body)["decision"] == "approved"
        await client.close()
    assert len([c for c in fake.calls_to("getUpdates") if c.status == 502]) == 2


async def _logged(caplog, text):
    return any(text in r.getMessage() for r in caplog.records)


async def test_poller_reports_a_webhook_in_the_way(fake, connector, caplog):
    """While a webhook is set, polling logs why it gets nothing and recovers once it is gone."""
    fake.webhook = {"url": "https://elsewhere.example.com/hook"}
    client = await polling(connector, fake)
    await eventually(lambda: _logged(caplog, "a webhook is set for this bot"))
    fake.webhook = None
    chat = {"id": ANN["id"], "type": "private"}
    await fake.push(fake.text(ANN, chat, "/start"))

    async def replied():
        return fake.sent(ANN["id"])

    await eventually(replied, timeout=15)
    await client.close()
