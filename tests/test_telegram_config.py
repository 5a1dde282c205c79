"""The [telegram] settings, the flow keys that go with them, and `telegram set-webhook`."""

from __future__ import annotations

import asyncio

import pytest

from connector.cli import main
from connector.config import ConfigError, load_settings

from .fake_telegram import FakeTelegram, parse_html, start_fake_telegram
from .telegram_helpers import SECRET, telegram_flow

TOKEN = "123456:ABC-def_ghi"


def settings(tmp_path, *, flow=None, **telegram):
    values = {"token": TOKEN, "webhook_secret": SECRET, **telegram}
    return load_settings(
        None,
        data_dir=str(tmp_path),
        telegram=values,
        flows={"post": flow or telegram_flow()},
    )


def test_defaults_and_secrets_stay_out_of_reprs(tmp_path):
    """Defaults are Telegram's public API in webhook mode; token and secret never print."""
    loaded = settings(tmp_path)
    assert loaded.telegram is not None
    assert loaded.telegram.api_url == "https://api.telegram.org"
    assert loaded.telegram.mode == "webhook"
    assert loaded.telegram.chat_rate == 1.0 and loaded.telegram.global_rate == 30.0
    assert loaded.telegram.bot_id == "123456"
    assert TOKEN not in repr(loaded) and SECRET not in repr(loaded)


@pytest.mark.parametrize(
    ("telegram", "message"),
    [
        ({"webhook_secret": ""}, "webhook_secret is required in webhook mode"),
        ({"webhook_secret": "has space"}, "1-256 characters"),
        ({"webhook_secret": "x" * 257}, "1-256 characters"),
        ({"webhook_secret": "ünïcode"}, "1-256 characters"),
        ({"token": "not-a-token"}, "token must look like"),
        ({"mode": "push"}, "telegram.mode"),
        ({"api_url": "ftp://x"}, "api_url must start with"),
        ({"poll_timeout": "90s"}, "between 1s and 50s"),
        ({"chat_rate": 0}, "telegram.chat_rate"),
        ({"colour": "blue"}, "telegram.colour: unknown key"),
    ],
)
def test_bad_telegram_settings_name_the_key(tmp_path, telegram, message):
    """A wrong [telegram] value fails at start with a message naming the key."""
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, **telegram)


def test_secret_edges_and_polling_without_secret(tmp_path):
    """A 256-character secret is fine; polling mode needs none."""
    assert settings(tmp_path, webhook_secret="a" * 256).telegram is not None
    polling = settings(tmp_path, mode="polling", webhook_secret="")
    assert polling.telegram is not None and polling.telegram.webhook_secret is None


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        (telegram_flow(channels=["email"], telegram_chat=-100), "'telegram' is not in channels"),
        (
            telegram_flow(reviewers=[{"email": "a@example.com"}]),
            "needs at least one reviewer with a telegram_id",
        ),
    ],
)
def test_flow_telegram_keys_are_checked(tmp_path, flow, message):
    """A flow's Telegram keys must make it possible for someone to decide there."""
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, flow=flow)


def test_telegram_channel_needs_the_section(tmp_path):
    """A flow on Telegram without a [telegram] section is refused."""
    with pytest.raises(ConfigError, match=r"\[telegram\] is unset"):
        load_settings(None, data_dir=str(tmp_path), flows={"post": telegram_flow()})


def _write_config(tmp_path, api_url, public_url="https://approvals.example.com"):
    path = tmp_path / "connector.toml"
    path.write_text(
        f'public_url = "{public_url}"\n'
        f'data_dir = "{tmp_path / "var"}"\n'
        "[telegram]\n"
        f'token = "{FakeTelegram().token}"\n'
        f'api_url = "{api_url}"\n'
        f'webhook_secret = "{SECRET}"\n',
        encoding="utf-8",
    )
    return str(path)


async def test_set_webhook_registers_url_secret_and_updates(tmp_path, capsys):
    """`telegram set-webhook` registers public_url/telegram/webhook with the secret token."""
    async with start_fake_telegram() as fake:
        config = _write_config(tmp_path, fake.url)
        code = await asyncio.to_thread(main, ["telegram", "set-webhook", "--config", config])
        assert code == 0
        assert fake.webhook == {
            "url": "https://approvals.example.com/telegram/webhook",
            "secret_token": SECRET,
            "allowed_updates": ["callback_query", "message"],
        }
        assert "https://approvals.example.com/telegram/webhook" in capsys.readouterr().out
        code = await asyncio.to_thread(main, ["telegram", "delete-webhook", "--config", config])
        assert code == 0 and fake.webhook is None


async def test_set_webhook_reports_telegrams_refusal(tmp_path, capsys):
    """Telegram's refusal (a plain-HTTP URL) is printed and the exit code is 1."""
    async with start_fake_telegram() as fake:
        config = _write_config(tmp_path, fake.url, public_url="http://approvals.example.com")
        code = await asyncio.to_thread(main, ["telegram", "set-webhook", "--config", config])
    assert code == 1
    err = capsys.readouterr().err
    assert "HTTPS URL must be provided" in err and fake.token not in err


@pytest.mark.parametrize(
    "html",
    ["<b>open", "a < b", "x & y", "<script>x</script>", "<b>x</i>", "</b>", "1 > 0"],
)
def test_fake_refuses_malformed_html_like_telegram(html):
    """The fake Bot API refuses what Telegram cannot parse, so the tests mean something."""
    from .fake_telegram import BadRequest

    with pytest.raises(BadRequest, match="can't parse entities"):
        parse_html(html)
    assert parse_html("<b>a &lt; b</b> &amp; &#33; &quot;") == 'a < b & ! "'


async def test_fake_refuses_long_callback_data_and_local_urls():
    """The fake refuses callback_data over 64 bytes and URL buttons to local addresses."""
    import aiohttp

    async with start_fake_telegram() as fake, aiohttp.ClientSession() as http:
        url = f"{fake.url}/bot{fake.token}/sendMessage"
        for button, error in (
            ({"text": "x", "callback_data": "é" * 33}, "BUTTON_DATA_INVALID"),
            ({"text": "x", "url": "http://127.0.0.1:8080/r/x"}, "BUTTON_URL_INVALID"),
        ):
            markup = {"inline_keyboard": [[button]]}
            async with http.post(
                url, json={"chat_id": 1, "text": "hi", "reply_markup": markup}
            ) as response:
                body = await response.json()
            assert response.status == 400 and error in body["description"]
