"""Shared fixtures: real SQLite files under tmp_path, a real HTTP receiver, the real app.

`pytest --store=postgres` runs the app-level tests on PostgreSQL instead (a fresh schema per
test, see pg.py); tests that need PostgreSQL whatever the option use the `pg_url` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp.test_utils import TestClient

from connector.app import create_app
from connector.config import Settings, load_settings
from connector.web.keys import service_key, store_key

from .pg import pg_schema_sync
from .receiver import Receiver, start_receiver

if TYPE_CHECKING:
    from .mailserver import MailServer

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

DEFAULT_FLOW = {
    "title": "Send the newsletter",
    "reviewers": [
        {"email": "ann@example.com", "name": "Ann"},
        {"email": "bob@example.com", "name": "Bob"},
    ],
    "channels": ["email"],
    "timeout": "1h",
    "on_timeout": "reject",
    "editable": ["subject", "body"],
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="the database the app-level tests run on (default: sqlite)",
    )


_DATABASE: dict[str, str] = {}  # with --store=postgres: this test's database URL
_SCHEMAS: list[contextlib.ExitStack] = []  # this test's PostgreSQL schemas, dropped last


@pytest.fixture(autouse=True)
def _store_backend(request: pytest.FixtureRequest) -> Iterator[None]:
    """With --store=postgres, give each test its own PostgreSQL schema for make_settings.

    Autouse fixtures are set up first and torn down last, so schemas are dropped only after
    every app of the test has closed.
    """
    with contextlib.ExitStack() as schemas:
        _SCHEMAS.append(schemas)
        if request.config.getoption("--store") == "postgres":
            _DATABASE["url"] = schemas.enter_context(pg_schema_sync())
        try:
            yield
        finally:
            _DATABASE.clear()
            _SCHEMAS.clear()


@pytest.fixture
def pg_url() -> str:
    """A PostgreSQL database URL (a fresh schema) for tests that need PostgreSQL."""
    url: str = _SCHEMAS[-1].enter_context(pg_schema_sync())
    return url


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a test: its own data dir, local receivers allowed, fast retries."""
    values: dict[str, Any] = {
        "database_url": _DATABASE.get("url", ""),
        "data_dir": str(tmp_path / "var"),
        "api_keys": [API_KEY],
        "resume_allow": ["127.0.0.1/32"],
        "retry_base_delay": "0.05s",
        "flows": {"news": DEFAULT_FLOW},
    }
    values.update(overrides)
    return load_settings(None, **values)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server recording resume callbacks."""
    async with start_receiver() as rec:
        yield rec


@pytest.fixture
def mail_server() -> Iterator[MailServer]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 recording every message and connection."""
    from .mailserver import MailServer

    server = MailServer().start()
    yield server
    server.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
def connector(aiohttp_client: Any, tmp_path: Path) -> ClientFactory:
    """Start the real connector app with settings built from overrides."""

    async def start(settings: Settings | None = None, **overrides: Any) -> TestClient:
        return await aiohttp_client(create_app(settings or make_settings(tmp_path, **overrides)))

    return start


@pytest.fixture
async def client(connector: ClientFactory) -> TestClient:
    """The connector with the default test settings."""
    return await connector()


def run_body(receiver: Receiver | None = None, **extra: Any) -> dict[str, Any]:
    """A realistic POST /v1/runs body."""
    body: dict[str, Any] = {
        "flow": "news",
        "title": "Send the November newsletter",
        "summary": "Goes to 1,204 subscribers",
        "action": {"subject": "November news", "body": "Hello all", "list": "customers"},
        "context": {"drafted_by": "assistant", "audience": 1204},
        "requested_by": "workflow@example.com",
    }
    if receiver is not None:
        body["resume"] = {"url": f"{receiver.url}/resume/abc?signature=x%2Fy"}
    body.update(extra)
    return body


async def create_run(client: TestClient, body: dict[str, Any], status: int = 201) -> dict[str, Any]:
    """POST a run and return its JSON."""
    response = await client.post("/v1/runs", json=body, headers=AUTH)
    data = await response.json()
    assert response.status == status, data
    return data


POLL_INTERVAL = 0.02  # seconds between checks in `eventually`


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy (never a fixed sleep)."""
    async with asyncio.timeout(timeout):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(POLL_INTERVAL)


async def review_links(client: TestClient, run_id: str, count: int = 2) -> dict[str, str]:
    """The per-reviewer review paths from the dev mailbox messages of this run."""
    store = client.app[store_key]

    async def links() -> dict[str, str]:
        found: dict[str, str] = {}
        for mail in await store.list_mail(500):
            for path in re.findall(r"https?://[^/\s]+(/r/[^\s?]+)", mail.text):
                claims = client.app[service_key].signer.verify(path[3:])
                if claims.run_id == run_id:
                    found[mail.to] = path
        return found if len(found) >= count else {}

    result: dict[str, str] = await eventually(links)
    return result


async def fetch_run(client: TestClient, run_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/runs/{run_id}", headers=AUTH)
    assert response.status == 200
    data: dict[str, Any] = await response.json()
    return data
