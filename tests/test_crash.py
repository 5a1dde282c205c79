"""kill -9 under load: every acknowledged run and decision survives, and is delivered."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from .conftest import API_KEY, eventually
from .receiver import start_receiver
from .test_delivery import free_port

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def write_config(path: Path, data_dir: Path) -> None:
    path.write_text(
        f"""
data_dir = "{data_dir}"
api_keys = ["{API_KEY}"]
resume_allow = ["127.0.0.1/32"]
retry_base_delay = "0.05s"

[flows.news]
reviewers = [{{ email = "ann@example.com" }}]
timeout = "3s"
editable = ["subject"]
""",
        encoding="utf-8",
    )


async def start_server(config: Path, port: int) -> asyncio.subprocess.Process:
    """Start `python -m connector serve` and wait until it answers /healthz."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "connector",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def healthy() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    await eventually(healthy, timeout=20)
    return process


async def load(
    base: str, resume_url: str, acked_runs: set[str], acked_decisions: set[str], stop: asyncio.Event
) -> None:
    """Create runs and decide some of them until the server dies."""
    async with aiohttp.ClientSession() as session:
        while not stop.is_set():
            try:
                async with session.post(
                    f"{base}/v1/runs",
                    json={
                        "flow": "news",
                        "action": {"subject": "s"},
                        "resume": {"url": resume_url},
                    },
                    headers=AUTH,
                ) as response:
                    if response.status == 201:
                        acked_runs.add((await response.json())["id"])
                if acked_runs and random.random() < 0.5:
                    run_id = random.choice(sorted(acked_runs))
                    async with session.post(
                        f"{base}/v1/runs/{run_id}/decision",
                        json={"decision": "approve", "reviewer": "ann@example.com"},
                        headers=AUTH,
                    ) as response:
                        if response.status == 200:
                            acked_decisions.add(run_id)
            except (TimeoutError, aiohttp.ClientError):
                return


async def test_kill_9_loses_nothing(tmp_path):
    """Three SIGKILLs under load: acknowledged runs exist, decisions hold, all are delivered.

    Runs time out after 3 s, so by the end every run is decided (by a person or its deadline)
    and each must reach the receiver, duplicates only with the same webhook-id.
    """
    config = tmp_path / "connector.toml"
    write_config(config, tmp_path / "var")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    acked_runs: set[str] = set()
    acked_decisions: set[str] = set()
    async with start_receiver() as receiver:
        for _ in range(3):
            process = await start_server(config, port)
            stop = asyncio.Event()
            workers = [
                asyncio.create_task(
                    load(base, f"{receiver.url}/hook", acked_runs, acked_decisions, stop)
                )
                for _ in range(8)
            ]
            await asyncio.sleep(random.uniform(0.3, 0.8))
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()
            stop.set()
            await asyncio.gather(*workers)
        process = await start_server(config, port)
        try:
            async with aiohttp.ClientSession(headers=AUTH) as session:
                for run_id in acked_runs:
                    async with session.get(f"{base}/v1/runs/{run_id}") as response:
                        assert response.status == 200, run_id
                        run = await response.json()
                    if run_id in acked_decisions:
                        assert run["status"] == "approved", run_id

            async def all_delivered() -> bool:
                delivered = {json.loads(c.body)["run_id"] for c in receiver.received}
                return acked_runs <= delivered

            try:
                await eventually(all_delivered, timeout=30)
            except TimeoutError:
                delivered = {json.loads(c.body)["run_id"] for c in receiver.received}
                missing = sorted(acked_runs - delivered)
                async with (
                    aiohttp.ClientSession(headers=AUTH) as session,
                    session.get(f"{base}/v1/runs/{missing[0]}") as response,
                ):
                    detail = await response.json()
                raise AssertionError(f"{len(missing)} undelivered, e.g. {detail}") from None
            webhook_ids: dict[str, set[str]] = {}
            for call in receiver.received:
                run_id = json.loads(call.body)["run_id"]
                webhook_ids.setdefault(run_id, set()).add(call.headers["webhook-id"])
            assert all(len(ids) == 1 for ids in webhook_ids.values())
            async with aiohttp.ClientSession(headers=AUTH) as session:
                for run_id in acked_decisions:
                    async with session.get(f"{base}/v1/runs/{run_id}") as response:
                        assert (await response.json())["decision"]["decided_by"] == "api"
        finally:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 10)
    assert len(acked_runs) > 10 and acked_decisions
