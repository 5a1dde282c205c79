"""One-off bot administration for the CLI: register or remove the webhook."""

from __future__ import annotations

from ..config import ConfigError, Settings, TelegramSettings
from .api import ALLOWED_UPDATES, TelegramClient

WEBHOOK_PATH = "/telegram/webhook"


def _telegram(settings: Settings) -> TelegramSettings:
    if settings.telegram is None:
        raise ConfigError("the configuration has no [telegram] section")
    return settings.telegram


async def set_webhook(settings: Settings) -> str:
    """Point the bot's webhook at `public_url` + /telegram/webhook, with the secret token."""
    telegram = _telegram(settings)
    if telegram.mode != "webhook" or telegram.webhook_secret is None:
        raise ConfigError('set-webhook needs mode = "webhook" and a webhook_secret in [telegram]')
    url = settings.public_url + WEBHOOK_PATH
    client = TelegramClient(telegram.token.get_secret_value(), api_url=telegram.api_url)
    try:
        await client.call(
            "setWebhook",
            {
                "url": url,
                "secret_token": telegram.webhook_secret.get_secret_value(),
                "allowed_updates": ALLOWED_UPDATES,
            },
        )
    finally:
        await client.close()
    return url


async def delete_webhook(settings: Settings) -> None:
    """Remove the bot's webhook (needed before polling mode can call getUpdates)."""
    telegram = _telegram(settings)
    client = TelegramClient(telegram.token.get_secret_value(), api_url=telegram.api_url)
    try:
        await client.call("deleteWebhook", {})
    finally:
        await client.close()
