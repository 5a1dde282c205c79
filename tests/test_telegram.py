"""The Telegram channel against a fake Bot API: prompts, presses, webhook, edits and limits."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

import pytest

from connector.web.keys import store_key

from .conftest import AUTH, create_run, eventually, fetch_run, review_links, run_body
from .fake_telegram import FakeTelegram, start_fake_telegram
from .telegram_helpers import (
    ANN,
    BOB,
    EVE,
    GROUP,
    PUBLIC_URL,
    buttons,
    deliver,
    start,
    telegram_flow,
)

HOSTILE = '<script>alert("x")</script> & </b><b>unclosed &amp; <a href="javascript:1">'


@pytest.fixture
async def fake():
    """A fake Telegram Bot API on a random port."""
    async with start_fake_telegram(FakeTelegram(chat_interval=0.05)) as api:
        yield api


def post_body(receiver=None, **extra):
    return run_body(receiver, flow="post", **extra)


async def prompts(fake, count=1, chat_id=None):
    """The prompts the fake accepted, once there are `count` of them."""

    async def found():
        sent = fake.sent(chat_id)
        return sent if len(sent) >= count else None

    return await eventually(found)


async def test_prompt_escapes_hostile_text_and_carries_buttons(fake, connector):
    """Hostile text arrives literally in an HTML prompt with Approve, Reject and a review link."""
    client = await start(connector, fake)
    body = post_body(
        title=HOSTILE,
        summary="Line one\n<i>not italic</i> & co",
        action={"subject": HOSTILE, "body": "multi\nline </pre> <pre>", "count": 3},
        context={"why": "x < y > z"},
    )
    run = await create_run(client, body)
    sent = await prompts(fake, 2)
    assert {m["chat"]["id"] for m in sent} == {ANN["id"], BOB["id"]}
    ann = next(m for m in sent if m["chat"]["id"] == ANN["id"])
    assert HOSTILE in ann["text"] and "multi\nline </pre> <pre>" in ann["text"]
    assert "x < y > z" in ann["text"] and "Line one\n<i>not italic</i> & co" in ann["text"]
    assert "&lt;script&gt;" in ann["html"]
    assert ann["link_preview_options"] == {"is_disabled": True}
    call = fake.calls_to("sendMessage", ok=True)[0]
    assert call.params["parse_mode"] == "HTML"
    keys = buttons(ann)
    assert set(keys) == {"approve", "reject", "review"}
    for choice in ("approve", "reject"):
        data = keys[choice]["callback_data"]
        assert len(data.encode()) <= 64 and run["id"] not in data and "." not in data
    assert keys["approve"]["callback_data"] != keys["reject"]["callback_data"]
    link = keys["review"]["url"]
    assert link.startswith(f"{PUBLIC_URL}/r/")
    page = await client.get(urlsplit(link).path)
    assert page.status == 200 and "&lt;script&gt;" in await page.text()
    assert not fake.calls_to("sendMessage", ok=False)


async def test_huge_action_is_cut_to_fit_one_message(fake, connector):
    """A run with a huge action still gets one valid prompt, cut, pointing to the review page."""
    client = await start(connector, fake, flow=telegram_flow(telegram_chat=GROUP))
    action = {f"field_{n}": ("<&>" if n % 2 else "🙂") * 400 + "\nend" for n in range(60)}
    await create_run(client, post_body(action=action, summary="ü🙂" * 4_000))
    (message,) = await prompts(fake, 1, GROUP)
    assert "… more on the review page" in message["text"]
    assert len(message["html"].encode("utf-16-le")) // 2 < 4096
    await deliver(
        client,
        await fake.push(fake.press(BOB, message, buttons(message)["reject"]["callback_data"])),
    )

    async def edited():
        return "Rejected by Bob" in fake.sent(GROUP)[0]["text"]

    await eventually(edited)


async def test_allowed_reviewer_approves_with_one_tap(fake, connector, receiver):
    """Ann's Approve press is answered, decides the run as Ann via telegram, and closes prompts."""
    client = await start(connector, fake)
    await create_run(client, post_body(receiver))
    sent = await prompts(fake, 2)
    ann = next(m for m in sent if m["chat"]["id"] == ANN["id"])
    update = await fake.push(fake.press(ANN, ann, buttons(ann)["approve"]["callback_data"]))
    assert await deliver(client, update) == 200

    (call,) = await receiver.wait_for(1)
    payload = json.loads(call.body)
    assert payload["decision"] == "approved" and payload["decided_by"] == "reviewer"
    assert payload["reviewer"] == {"id": "ann@example.com", "name": "Ann", "channel": "telegram"}
    assert payload["action"] == body_action()

    async def closed():
        return all("reply_markup" not in m for m in fake.sent()) and fake.sent()

    for message in await eventually(closed):
        assert "Approved by Ann via telegram at " in message["text"]
    methods = [c.method for c in fake.calls if c.method != "sendMessage"]
    assert methods[0] == "answerCallbackQuery"  # answered before anything else happened
    assert fake.answers()[0]["show_alert"] is False


def body_action():
    return post_body()["action"]


async def test_telegram_only_reviewer_rejects(fake, connector, receiver):
    """Bob (no email) rejects from his chat; the decision names him and channel telegram."""
    client = await start(connector, fake)
    await create_run(client, post_body(receiver))
    bob = (await prompts(fake, 1, BOB["id"]))[0]
    update = await fake.push(fake.press(BOB, bob, buttons(bob)["reject"]["callback_data"]))
    assert await deliver(client, update) == 200
    (call,) = await receiver.wait_for(1)
    payload = json.loads(call.body)
    assert payload["decision"] == "rejected" and payload["approved"] is False
    assert payload["reviewer"] == {"id": "telegram:1002", "name": "Bob", "channel": "telegram"}

    async def edited():
        sent = fake.sent(ANN["id"])  # Ann's prompt may still be on its way
        message = sent[0] if sent else {"text": ""}
        return "Rejected by Bob via telegram" in message["text"] and "reply_markup" not in message

    await eventually(edited)


async def test_group_stranger_gets_alert_and_nothing_changes(fake, connector, receiver):
    """In a group, Eve's press is refused with an alert; Bob's press then decides the run."""
    client = await start(connector, fake, flow=telegram_flow(telegram_chat=GROUP))
    run = await create_run(client, post_body(receiver))
    (message,) = await prompts(fake, 1, GROUP)
    keys = buttons(message)
    assert set(keys) == {"approve", "reject", "review"}
    assert "callback_data" in keys["review"]  # a personal link never goes to a group

    update = await fake.push(fake.press(EVE, message, keys["approve"]["callback_data"]))
    assert await deliver(client, update) == 200
    answers = await eventually(lambda: _answers(fake, 1))
    assert answers[0]["show_alert"] is True and "reviewers" in answers[0]["text"]
    stored = await fetch_run(client, run["id"])
    assert stored["status"] == "pending"
    assert any(e["kind"] == "refused" for e in stored["events"])
    assert not fake.calls_to("editMessageText")

    update = await fake.push(fake.press(BOB, message, keys["reject"]["callback_data"]))
    assert await deliver(client, update) == 200
    (call,) = await receiver.wait_for(1)
    assert json.loads(call.body)["reviewer"]["name"] == "Bob"


async def _answers(fake, count):
    answers = fake.answers()
    return answers if len(answers) >= count else None


async def test_group_review_button_sends_a_private_link(fake, connector):
    """A reviewer's Review & edit press in a group brings their own link in a private chat."""
    client = await start(connector, fake, flow=telegram_flow(telegram_chat=GROUP))
    await create_run(client, post_body())
    (message,) = await prompts(fake, 1, GROUP)
    review = buttons(message)["review"]["callback_data"]
    update = await fake.push(fake.press(BOB, message, review))
    assert await deliver(client, update) == 200
    (private,) = await prompts(fake, 1, BOB["id"])
    assert f'href="{PUBLIC_URL}/r/' in private["html"]
    token = private["html"].split("/r/", 1)[1].split('"', 1)[0]
    page = await client.get(f"/r/{token}")
    assert page.status == 200
    assert "private chat" in (await eventually(lambda: _answers(fake, 1)))[0]["text"]

    update = await fake.push(fake.press(EVE, message, review))
    await deliver(client, update)
    answers = await eventually(lambda: _answers(fake, 2))
    assert answers[1]["show_alert"] is True and len(fake.sent(EVE["id"])) == 0

    fake.blocked.add(ANN["id"])  # Ann never started a private chat with the bot
    update = await fake.push(fake.press(ANN, message, review))
    await deliver(client, update)
    answers = await eventually(lambda: _answers(fake, 3))
    assert answers[2]["show_alert"] is True and "/start" in answers[2]["text"]


async def test_replayed_update_is_processed_once(fake, connector, receiver):
    """Telegram re-sending the same update_id answers 200 but neither answers nor decides again."""
    client = await start(connector, fake)
    await create_run(client, post_body(receiver))
    ann = (await prompts(fake, 1, ANN["id"]))[0]
    update = await fake.push(fake.press(ANN, ann, buttons(ann)["approve"]["callback_data"]))
    assert await deliver(client, update) == 200
    await receiver.wait_for(1)
    await eventually(lambda: _edits(fake, 2))
    assert await deliver(client, update) == 200
    assert await deliver(client, update) == 200
    await eventually(lambda: _edits(fake, 2))
    assert len(fake.calls_to("answerCallbackQuery")) == 1
    assert len(receiver.received) == 1


async def _edits(fake, count):
    edits = fake.calls_to("editMessageText", ok=True)
    return edits if len(edits) >= count else None


@pytest.mark.parametrize("secret", [None, "", "wrong-secret", "test_secret-012345678"])
async def test_webhook_refuses_missing_or_wrong_secret(fake, connector, secret):
    """Without the exact secret token the webhook answers 401 and records nothing."""
    client = await start(connector, fake)
    await create_run(client, post_body())
    ann = (await prompts(fake, 1, ANN["id"]))[0]
    update = await fake.push(fake.press(ANN, ann, buttons(ann)["approve"]["callback_data"]))
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    response = await client.post("/telegram/webhook", json=update, headers=headers)
    assert response.status == 401
    body = await response.json()
    assert body["ok"] is False and body["status"] == 401
    assert await deliver(client, update) == 200  # the genuine delivery is not taken as a replay
    await eventually(lambda: _answers(fake, 1))


async def test_webhook_refuses_a_body_without_update_id(fake, connector):
    """A body that is not an update is a 400, never a 500."""
    client = await start(connector, fake)
    assert await deliver(client, {"message": {}}) == 400
    headers = {"X-Telegram-Bot-Api-Secret-Token": "test_secret-0123456789"}
    response = await client.post("/telegram/webhook", data=b"not json", headers=headers)
    assert response.status == 400


async def test_decision_on_review_page_edits_telegram_prompts(fake, connector):
    """Approving by email link edits the prompts: no buttons, "Approved by Ann via email"."""
    flow = telegram_flow(channels=["email", "telegram"])
    client = await start(connector, fake, flow=flow)
    run = await create_run(client, post_body())
    await prompts(fake, 2)
    links = await review_links(client, run["id"], count=1)
    response = await client.post(links["ann@example.com"], data={"choice": "approve"})
    assert response.status == 200
    edits = await eventually(lambda: _edits(fake, 2))
    for message in fake.sent():
        assert "reply_markup" not in message
        assert "Approved by Ann via email at " in message["text"]
    assert all(e.params["reply_markup"] == {"inline_keyboard": []} for e in edits)

    # A late press on the (now closed) prompt only hears who decided.
    bob = fake.sent(BOB["id"])[0]
    stale = fake.press(BOB, bob, buttons_before_close(fake, BOB["id"])["approve"])
    await deliver(client, await fake.push(stale))
    answer = (await eventually(lambda: _answers(fake, 1)))[0]
    assert answer["text"].startswith("Already decided: approved by Ann")


def buttons_before_close(fake, chat_id):
    first = next(c for c in fake.calls_to("sendMessage", ok=True) if c.params["chat_id"] == chat_id)
    rows = first.params["reply_markup"]["inline_keyboard"]
    return {b["text"].split()[-1].lower(): b.get("callback_data") for b in rows[0]}


async def test_decision_by_api_and_cancel_edit_prompts(fake, connector):
    """An API decision and a cancellation both show on the Telegram prompts."""
    client = await start(connector, fake)
    first = await create_run(client, post_body())
    second = await create_run(client, post_body())
    await prompts(fake, 4)
    response = await client.post(
        f"/v1/runs/{first['id']}/decision",
        json={"decision": "reject", "reviewer": "ann@example.com", "comment": "not <now>"},
        headers=AUTH,
    )
    assert response.status == 200
    response = await client.post(f"/v1/runs/{second['id']}/cancel", headers=AUTH)
    assert response.status == 200
    await eventually(lambda: _edits(fake, 4))
    texts = [m["text"] for m in fake.sent()]
    assert sum("Rejected by Ann via api at " in t and "not <now>" in t for t in texts) == 2
    assert sum("Cancelled via the API at " in t for t in texts) == 2


async def test_timeout_edits_prompts(fake, connector):
    """When the deadline passes, the prompts say the run was decided automatically."""
    client = await start(connector, fake, flow=telegram_flow(timeout="1s"))
    await create_run(client, post_body())
    await prompts(fake, 2)
    await eventually(lambda: _edits(fake, 2))
    for message in fake.sent():
        assert "Rejected automatically: no decision before the deadline" in message["text"]


async def test_flood_control_429_is_honoured(fake, connector, caplog):
    """A 429 delays the prompt by retry_after; it still arrives and nothing is logged as error."""
    caplog.set_level(logging.INFO)
    fake.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    client = await start(connector, fake, flow=telegram_flow(telegram_chat=GROUP))
    run = await create_run(client, post_body())
    await prompts(fake, 1, GROUP)
    refused, accepted = fake.calls_to("sendMessage")
    assert refused.status == 429 and accepted.status == 200
    assert accepted.at - refused.at >= 1.0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    (job,) = await eventually(lambda: _finished_prompts(client, run["id"]))
    assert job.status == "done" and job.attempts == 2


async def _finished_prompts(client, run_id):
    jobs = await client.app[store_key].jobs_for_run(run_id, "telegram.prompt")
    return jobs if all(j.status != "pending" for j in jobs) else None


async def test_server_errors_are_retried_and_the_token_never_logged(fake, connector, caplog):
    """5xx answers are retried with backoff until the prompt is sent; the token stays secret."""
    caplog.set_level(logging.DEBUG)
    fake.fail("sendMessage", 502, "Bad Gateway", times=2)
    client = await start(connector, fake, flow=telegram_flow(telegram_chat=GROUP))
    run = await create_run(client, post_body())
    await prompts(fake, 1, GROUP)
    (job,) = await eventually(lambda: _finished_prompts(client, run["id"]))
    assert job.status == "done" and job.attempts == 3
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("connector")]
    assert any("Bad Gateway" in line for line in ours)
    assert not [line for line in ours if fake.token in line]
    assert fake.token not in json.dumps(await fetch_run(client, run["id"]))


async def test_blocked_reviewer_fails_without_retrying(fake, connector):
    """A reviewer who blocked the bot gets no prompt; the other reviewer still does."""
    fake.blocked.add(BOB["id"])
    client = await start(connector, fake)
    run = await create_run(client, post_body())
    await prompts(fake, 1, ANN["id"])

    async def failed():
        jobs = await client.app[store_key].jobs_for_run(run["id"], "telegram.prompt")
        return [j for j in jobs if j.status == "failed"]

    (job,) = await eventually(failed)
    assert job.last_status == 403 and job.attempts == 1


async def test_fifty_runs_to_one_chat_arrive_in_order_without_429(connector, caplog):
    """50 prompts to one group arrive in creation order, paced, with no 429 and no error log."""
    caplog.set_level(logging.INFO)
    async with start_fake_telegram(FakeTelegram(chat_interval=0.1)) as fake:
        client = await start(
            connector, fake, flow=telegram_flow(telegram_chat=GROUP), chat_rate=10.0
        )
        for number in range(50):
            await create_run(client, post_body(title=f"Run {number:02d}"))
        sent = await prompts(fake, 50, GROUP)
        await client.close()
    titles = [m["text"].split("\n", 1)[0] for m in sent]
    assert titles == [f"Approval needed: Run {n:02d}" for n in range(50)]
    assert not [c for c in fake.calls if c.status == 429]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    gaps = [b.at - a.at for a, b in zip(fake.calls, fake.calls[1:], strict=False)]
    assert min(gaps) >= 0.1


async def test_default_limits_pass_telegrams_one_per_second(connector):
    """With the default chat_rate, prompts to one chat are spaced to Telegram's 1 message/s."""
    async with start_fake_telegram(FakeTelegram(chat_interval=1.0)) as fake:
        client = await start(
            connector, fake, flow=telegram_flow(telegram_chat=GROUP), chat_rate=1.0
        )
        for number in range(3):
            await create_run(client, post_body(title=f"Run {number}"))
        await prompts(fake, 3, GROUP)
        await client.close()
    assert [c.status for c in fake.calls] == [200, 200, 200]


async def test_start_tells_users_their_id(fake, connector):
    """/start in a private chat answers the user's id and the config lines to add it."""
    client = await start(connector, fake)
    update = await fake.push(fake.text(EVE, {"id": EVE["id"], "type": "private"}, "/start"))
    assert await deliver(client, update) == 200
    (reply,) = await prompts(fake, 1, EVE["id"])
    assert "Your Telegram user id is 6666" in reply["text"]
    assert "telegram_id = 6666" in reply["text"]

    group = {"id": GROUP, "type": "supergroup", "title": "Ops"}
    update = await fake.push(fake.text(EVE, group, "/start@approvals_bot"))
    assert await deliver(client, update) == 200
    (reply,) = await prompts(fake, 1, GROUP)
    assert f"telegram_chat = {GROUP}" in reply["text"]


async def test_pending_lists_waiting_runs_with_links(fake, connector):
    """/pending lists the reviewer's waiting runs with their own review links."""
    client = await start(connector, fake)
    await create_run(client, post_body(title="First <one>"))
    await create_run(client, post_body(title="Second & last"))
    await prompts(fake, 4)
    chat = {"id": ANN["id"], "type": "private"}
    update = await fake.push(fake.text(ANN, chat, "/pending"))
    assert await deliver(client, update) == 200
    reply = (await prompts(fake, 3, ANN["id"]))[-1]
    assert "2 waiting for your decision" in reply["text"]
    assert "First <one>" in reply["text"] and "Second & last" in reply["text"]
    assert reply["html"].count(f'href="{PUBLIC_URL}/r/') == 2

    update = await fake.push(fake.text(EVE, {"id": EVE["id"], "type": "private"}, "/pending"))
    assert await deliver(client, update) == 200
    (reply,) = await prompts(fake, 1, EVE["id"])
    assert "not a reviewer" in reply["text"]
