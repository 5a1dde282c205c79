"""Shared pieces for the Telegram tests: people, flows, and starting the connector on the fake."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from .fake_telegram import FakeTelegram

SECRET = "test_secret-0123456789"
PUBLIC_URL = "https://approvals.example.com"
ANN = {"id": 1001, "is_bot": False, "first_name": "Ann"}
BOB = {"id": 1002, "is_bot": False, "first_name": "Bob"}
EVE = {"id": 6666, "is_bot": False, "first_name": "Eve"}
GROUP = -1001234567890


def telegram_flow(**extra: Any) -> dict[str, Any]:
    """A flow whose reviewers are Ann (email and Telegram) and Bob (Telegram only)."""
    flow: dict[str, Any] = {
        "title": "Publish the post",
        "reviewers": [
            {"email": "ann@example.com", "name": "Ann", "telegram_id": ANN["id"]},
            {"name": "Bob", "telegram_id": BOB["id"]},
        ],
        "channels": ["telegram"],
        "timeout": "1h",
        "editable": ["subject"],
    }
    flow.update(extra)
    return flow


async def start(
    connector: Any, fake: FakeTelegram, *, flow: dict[str, Any] | None = None, **telegram: Any
) -> TestClient:
    """The connector with [telegram] pointing at the fake (webhook mode unless overridden)."""
    settings: dict[str, Any] = {
        "token": fake.token,
        "api_url": fake.url,
        "mode": "webhook",
        "webhook_secret": SECRET,
        "chat_rate": 20.0,
    }
    settings.update(telegram)
    client: TestClient = await connector(
        public_url=PUBLIC_URL,
        telegram=settings,
        flows={"post": flow or telegram_flow()},
    )
    return client


async def deliver(client: TestClient, update: dict[str, Any], secret: str | None = SECRET) -> int:
    """POST an update to the webhook as Telegram does; the HTTP status."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    response = await client.post("/telegram/webhook", json=update, headers=headers)
    return response.status


def buttons(message: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The message's inline buttons by label word (approve, reject, review)."""
    found = {}
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for button in row:
            word = button["text"].split()[-1].lower()
            found["review" if word == "edit" else word] = button
    return found
