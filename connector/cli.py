"""Command line: `hitl-connector serve | check-config | migrate | telegram …`. Builds Settings
once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import sys
from collections.abc import Sequence

from aiohttp import web

from .config import ConfigError, Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    path = args.config or os.environ.get("CONNECTOR_CONFIG")
    overrides = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    return load_settings(path, **overrides)


def _describe_flows(settings: Settings) -> list[str]:
    lines = []
    for name, flow in settings.flows.items():
        reviewers = ", ".join(r.display_name for r in flow.reviewers) or "no reviewers"
        lines.append(
            f"  {name}: {flow.title or name} — {reviewers}; channels {', '.join(flow.channels)};"
            f" timeout {flow.timeout} then {flow.on_timeout}"
        )
    return lines


def serve(settings: Settings) -> int:
    """Run the connector until interrupted."""
    from .app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"

    def announce(_: str) -> None:
        print(f"hitl-connector listening on {base} (public URL {settings.public_url})", flush=True)
        print(f"  flows: {', '.join(settings.flows) or 'none configured'}", flush=True)
        if settings.smtp is not None:
            smtp = settings.smtp
            print(f"  email: SMTP {smtp.host}:{smtp.effective_port} as {smtp.sender}", flush=True)
        elif settings.dev_mailbox_active:
            print(
                f"  dev mailbox (no SMTP configured): {settings.public_url}/dev/mailbox", flush=True
            )
        else:
            print(
                "  email: no [smtp] configured and dev_mailbox = false: emails are kept, not sent"
            )

    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=announce,
        access_log=None,
        handle_signals=True,
        shutdown_timeout=5,
    )
    return 0


def telegram(settings: Settings, action: str) -> int:
    """`telegram set-webhook` / `telegram delete-webhook`: register or remove the webhook."""
    from .telegram.admin import delete_webhook, set_webhook
    from .telegram.api import TelegramError

    try:
        if action == "set-webhook":
            url = asyncio.run(set_webhook(settings))
            print(f"webhook set: Telegram now sends updates to {url}")
        else:
            asyncio.run(delete_webhook(settings))
            print("webhook deleted: polling mode can receive updates now")
    except (ConfigError, TelegramError) as exc:
        print(f"hitl-connector: {exc}", file=sys.stderr)
        return 1
    return 0


def redact(url: str) -> str:
    """The database URL without its password, for printing."""
    return re.sub(r"(://[^/:@]*):[^/@]*@", r"\1:***@", url)


def migrate(settings: Settings) -> int:
    """`migrate`: bring the database schema up to date (serve does this too, at start)."""
    from .store import migrate as migrate_store

    try:
        applied, latest = asyncio.run(migrate_store(settings.database))
    except Exception as exc:  # any driver error: report it, as for a bad config
        print(f"hitl-connector: cannot migrate {redact(settings.database)}: {exc}", file=sys.stderr)
        return 1
    done = f"applied {', '.join(map(str, applied))}" if applied else "nothing to apply"
    print(f"{redact(settings.database)}: schema version {latest} ({done})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `hitl-connector` command."""
    parser = argparse.ArgumentParser(prog="hitl-connector", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the connector")
    serve_cmd.add_argument("--config", help="TOML file (default: $CONNECTOR_CONFIG)")
    serve_cmd.add_argument("--host", help="address to listen on")
    serve_cmd.add_argument("--port", type=int, help="port to listen on")
    check_cmd = sub.add_parser("check-config", help="validate a config file and list its flows")
    check_cmd.add_argument("--config", help="TOML file (default: $CONNECTOR_CONFIG)")
    check_cmd.add_argument("file", nargs="?", help="TOML file (same as --config)")
    migrate_cmd = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate_cmd.add_argument("--config", help="TOML file (default: $CONNECTOR_CONFIG)")
    telegram_cmd = sub.add_parser("telegram", help="manage the Telegram bot")
    telegram_sub = telegram_cmd.add_subparsers(dest="action", required=True)
    for action, text in (
        ("set-webhook", "point the bot's webhook at public_url/telegram/webhook"),
        ("delete-webhook", "remove the bot's webhook (for polling mode)"),
    ):
        action_cmd = telegram_sub.add_parser(action, help=text)
        action_cmd.add_argument("--config", help="TOML file (default: $CONNECTOR_CONFIG)")
    args = parser.parse_args(argv)
    if args.command == "check-config" and args.file:
        args.config = args.file
    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"hitl-connector: {exc}", file=sys.stderr)
        return 1
    if args.command == "check-config":
        print(f"configuration OK: {len(settings.flows)} flow(s)")
        print("\n".join(_describe_flows(settings)))
        return 0
    if args.command == "telegram":
        return telegram(settings, args.action)
    if args.command == "migrate":
        return migrate(settings)
    return serve(settings)
