"""The application factory: every resource is opened and closed in one place (cleanup_ctx)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiohttp import web

from .config import Settings, signing_keys
from .deadlines import DeadlineWatcher
from .delivery import ResumeDeliverer
from .hooks import HookChannel
from .jobs import Handler, JobRunner, RetryPolicy
from .links import LinkSigner
from .metrics import Metrics
from .notify.email import EmailChannel, open_transport
from .service import ESCALATE_JOB, RESUME_JOB, RunService
from .store import Store, open_store
from .telegram.api import TelegramClient
from .telegram.channel import TelegramChannel
from .telegram.poller import Poller
from .urlguard import AddressPolicy, GuardedResolver
from .web.inbox import new_inbox
from .web.keys import (
    clock_key,
    inbox_key,
    metrics_key,
    runner_key,
    service_key,
    settings_key,
    store_key,
    telegram_key,
    templates_key,
)
from .web.middleware import error_middleware
from .web.routes import add_routes
from .web.templates import make_templates


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    async with open_store(settings.database, pool_size=settings.database_pool_size) as store:
        app[store_key] = store
        yield


async def _link_keys(settings: Settings, store: Store) -> list[str]:
    """Configured keys; else one generated key, kept where every instance finds it."""
    if settings.secret_keys or not settings.shared_database:
        return signing_keys(settings)
    # Instances on other machines have other data dirs: the shared database keeps the key.
    return [await store.keep_secret("link_signing_key", secrets.token_urlsafe(48))]


class _Hook:
    """A callback wired to its target later: the service needs the job runner's wake-up, and
    the runner needs the handlers of the channels that are built around the service."""

    def __init__(self) -> None:
        self._target: Callable[..., None] | None = None

    def connect(self, target: Callable[..., None]) -> None:
        self._target = target

    def __call__(self, *args: Any) -> None:
        if self._target is not None:
            self._target(*args)


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    clock = app[clock_key]
    addresses = AddressPolicy(settings.resume_allow)
    keys = await _link_keys(settings, app[store_key])
    signer = LinkSigner(keys, max_age=settings.max_link_age.total_seconds())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(addresses), limit=256),
        auto_decompress=False,
    )
    wake_runner, deadline_added = _Hook(), _Hook()
    service = RunService(
        settings,
        app[store_key],
        signer,
        addresses,
        on_work=wake_runner,
        on_new_deadline=deadline_added,
        clock=clock,
        metrics=app[metrics_key],
    )
    deliverer = ResumeDeliverer(
        session,
        addresses,
        webhook_secret=settings.webhook_secret,
        timeout=settings.delivery_timeout.total_seconds(),
    )
    email = EmailChannel(service, open_transport(settings, app[store_key]))
    service.add_channel(email)
    telegram_client: TelegramClient | None = None
    if settings.telegram is not None:
        telegram_client = TelegramClient(
            settings.telegram.token.get_secret_value(), api_url=settings.telegram.api_url
        )
        telegram = TelegramChannel(
            service,
            telegram_client,
            settings.telegram,
            on_work=wake_runner,
        )
        service.add_channel(telegram)
        app[telegram_key] = telegram
    service.add_channel(HookChannel(app[store_key], deliverer))
    handlers: dict[str, Handler] = {ESCALATE_JOB: service.escalate, RESUME_JOB: deliverer}
    for channel in service.channels:
        handlers.update(channel.handlers())
    runner = JobRunner(
        app[store_key],
        handlers,
        retry=RetryPolicy(
            base_delay=settings.retry_base_delay.total_seconds(),
            give_up_after=settings.delivery_retry_for.total_seconds(),
        ),
        lease=settings.job_lease.total_seconds(),
        clock=clock,
        metrics=app[metrics_key],
    )
    watcher = DeadlineWatcher(service)
    wake_runner.connect(runner.wake)
    deadline_added.connect(watcher.deadline_added)
    app[service_key] = service
    app[runner_key] = runner
    # A long poll here ends when any instance sharing the database records the decision.
    await app[store_key].listen_decisions(service.release_waiters)
    tasks = [
        asyncio.create_task(runner.run(), name="job-runner"),
        asyncio.create_task(watcher.run(), name="deadline-watcher"),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await session.close()
        if telegram_client is not None:
            await telegram_client.close()
        await email.close()


async def _telegram_poller_ctx(app: web.Application) -> AsyncIterator[None]:
    """In polling mode, long-poll getUpdates for as long as the app runs."""
    settings = app[settings_key].telegram
    channel = app.get(telegram_key)
    if settings is None or settings.mode != "polling" or channel is None:
        yield
        return
    poller = Poller(channel.client, channel, timeout=settings.poll_timeout.total_seconds())
    # Telegram allows one getUpdates caller per bot: among instances sharing a database, the one
    # holding the lock polls and the others stand by to take over.
    task = asyncio.create_task(
        app[store_key].run_exclusive(f"telegram-poller:{settings.bot_id}", poller.run),
        name="telegram-poller",
    )
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """The whole connector as an aiohttp application (`clock` is for tests of timing)."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[settings_key] = settings
    app[clock_key] = clock
    app[metrics_key] = Metrics()
    app[inbox_key] = new_inbox()
    app[templates_key] = make_templates()
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_service_ctx)
    app.cleanup_ctx.append(_telegram_poller_ctx)
    telegram_webhook = settings.telegram is not None and settings.telegram.mode == "webhook"
    add_routes(app, dev_mailbox=settings.dev_mailbox_active, telegram_webhook=telegram_webhook)
    return app
