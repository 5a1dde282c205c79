"""The application factory: every resource is opened and closed in one place (cleanup_ctx)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from .config import Settings, signing_keys
from .deadlines import DeadlineWatcher
from .delivery import ResumeDeliverer
from .jobs import Handler, JobRunner, RetryPolicy
from .links import LinkSigner
from .notify.email import EmailChannel, open_transport
from .service import RESUME_JOB, RunService
from .store import open_store
from .urlguard import AddressPolicy, GuardedResolver
from .web.keys import runner_key, service_key, settings_key, store_key, templates_key
from .web.middleware import error_middleware
from .web.routes import add_routes
from .web.templates import make_templates


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    async with open_store(app[settings_key].database_path) as store:
        app[store_key] = store
        yield


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[settings_key]
    addresses = AddressPolicy(settings.resume_allow)
    signer = LinkSigner(signing_keys(settings), max_age=settings.max_link_age.total_seconds())
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(addresses), limit=256),
        auto_decompress=False,
    )
    runner_ref: list[JobRunner] = []
    watcher_ref: list[DeadlineWatcher] = []
    service = RunService(
        settings,
        app[store_key],
        signer,
        addresses,
        on_work=lambda: runner_ref[0].wake() if runner_ref else None,
        on_new_deadline=lambda at: watcher_ref[0].deadline_added(at) if watcher_ref else None,
    )
    email = EmailChannel(service, open_transport(settings, app[store_key]))
    service.add_channel(email)
    handlers: dict[str, Handler] = {
        RESUME_JOB: ResumeDeliverer(
            session,
            addresses,
            webhook_secret=settings.webhook_secret,
            timeout=settings.delivery_timeout.total_seconds(),
        ),
    }
    for channel in service.channels:
        handlers.update(channel.handlers())
    runner = JobRunner(
        app[store_key],
        handlers,
        retry=RetryPolicy(
            base_delay=settings.retry_base_delay.total_seconds(),
            give_up_after=settings.delivery_retry_for.total_seconds(),
        ),
    )
    watcher = DeadlineWatcher(service)
    runner_ref.append(runner)
    watcher_ref.append(watcher)
    app[service_key] = service
    app[runner_key] = runner
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
        await email.close()


def create_app(settings: Settings) -> web.Application:
    """The whole connector as an aiohttp application."""
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[settings_key] = settings
    app[templates_key] = make_templates()
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_service_ctx)
    add_routes(app, dev_mailbox=settings.dev_mailbox_active)
    return app
