"""From the email to a recorded decision in a real headless Chromium (Debian's chromium)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from playwright.async_api import Browser, async_playwright

from connector.app import create_app

from .conftest import create_run, make_settings, run_body
from .emails import Page, html_of
from .mailserver import free_port

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 360, "height": 740}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM),
        reason=(
            f"BROWSER TESTS SKIPPED: {CHROMIUM} is missing. Install it with "
            "`apt-get update && apt-get install -y chromium` (.ci/run does this)."
        ),
    ),
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium driven by Playwright (Playwright's own browser is never downloaded)."""
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def live_connector(tmp_path: Path, **overrides: Any) -> AsyncIterator[TestClient]:
    """The connector on a real port that its own links (public_url) point at."""
    port = free_port()
    settings = make_settings(tmp_path, public_url=f"http://127.0.0.1:{port}", **overrides)
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=port)) as client:
        yield client


async def test_email_link_edit_and_approve_in_browser(mail_server, receiver, tmp_path):
    """A reviewer opens "Review & edit" from the email, edits a field, approves, sees the result."""
    async with live_connector(tmp_path, smtp=mail_server.smtp()) as client:
        await create_run(client, run_body(receiver))
        await mail_server.wait_for(2)
        (email,) = mail_server.to("ann@example.com")
        review = Page(html_of(email)).button("Review & edit")
        async with chromium() as browser:
            page = await browser.new_page(viewport=PHONE)
            await page.goto(review)
            await page.get_by_text("Send the November newsletter").first.wait_for()
            await page.fill('input[name="field.subject"]', "December news")
            await page.get_by_role("button", name="Approve").click()
            await page.get_by_text("Thank you").wait_for()
            assert "approved" in await page.inner_text("h1")
            assert "December news" in await page.inner_text("body")
            await page.screenshot(path=str(tmp_path / "result.png"))
        (call,) = await receiver.wait_for(1)
        payload = json.loads(call.body)
        assert payload["decision"] == "approved"
        assert payload["changes"] == {"subject": {"from": "November news", "to": "December news"}}
        assert payload["reviewer"]["id"] == "ann@example.com"


async def test_dev_mailbox_button_to_decision_in_browser(receiver, tmp_path):
    """In the dev mailbox the rendered email's Approve button opens the page; one tap confirms."""
    async with live_connector(tmp_path) as client:
        run = await create_run(client, run_body(receiver))
        async with chromium() as browser:
            page = await browser.new_page(viewport=PHONE)
            await page.goto(str(client.make_url("/dev/mailbox")))
            frame = page.frame_locator("iframe").first
            await frame.get_by_role("link", name="Approve").click()
            await page.wait_for_url("**/r/**choice=approve")
            await page.get_by_role("button", name="Confirm approval").click()
            await page.get_by_text("Thank you").wait_for()
        (call,) = await receiver.wait_for(1)
        payload = json.loads(call.body)
        assert payload["run_id"] == run["id"] and payload["decision"] == "approved"
